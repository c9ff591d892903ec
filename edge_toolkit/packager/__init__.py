"""The packager: registered model(s) → module folder → Docker image → registry.

targets        module_templates/<target>/target.yaml as typed values (targets are data)
plan           pure: a ModulePlan and the files it renders (module.json, Dockerfiles, agent.yaml …)
writer         writes a plan to a module folder (the only file I/O of packaging)
module         reads a module folder back (for build and push)
requirements   the device-side requirement lines for a target
wheels         offline wheels for a platform (pip download), cached by requirement set
credentials    registry credentials from the environment or .env (never logged)
docker_client  the only module that imports `docker`; maps its errors into ours
base_image     the local Debian base image (mmdebstrap → docker import), cached as a tar
build, push    the two engine operations, with progress events
"""
