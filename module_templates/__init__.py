"""Packaging targets as data: one folder per accelerator target (base image, runtime package,
execution-provider order, device mounts, Dockerfile template). Read with importlib.resources."""
