"""What packaging costs, through the real CLI on a private Docker engine and registry.

Steps, each timed: `edgekit package` (module folder), a cold `edgekit build --offline` on the
local Debian base (the base image and the wheel download come from their caches when present; the
first time on a machine they are made and counted separately below), `edgekit push`, then a new
model version: package, model-only rebuild, push. Ratios are against the cold build and the first
push of the same run; the image size is set against the device-side wheels it installs.

Run: `.venv/bin/python benchmarks/packager.py [--hidden 4096]` (as root: it starts dockerd).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_toolkit.packager.wheels import cache_root
from edge_toolkit.workspace import Workspace
from tests import onnx_models
from tests.docker_infra import docker_daemon, image_registry


def edgekit(*args: str, cwd: Path, env: dict[str, str]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "edge_toolkit.cli.main", *args, "--json"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"edgekit {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout), seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=4096, help="MLP hidden width (4096: ~1 MB model)")
    args = parser.parse_args()

    caches = cache_root()
    print(
        f"caches in {caches}: base image {'present' if (caches / 'base-images').exists() else 'to be made'}, "
        f"wheels {'present' if (caches / 'wheels').exists() else 'to be downloaded'}"
    )
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-pkg-") as tmp:
        folder = Path(tmp)
        with docker_daemon(folder / "engine") as daemon, image_registry(folder / "registry") as registry:
            env = {"DOCKER_HOST": daemon.host, "EDGEKIT_HOME": str(folder / ".edgekit")}
            workspace = Workspace.create(folder / ".edgekit")
            for version in (1, 2):
                model = onnx_models.save(
                    onnx_models.mlp(hidden=args.hidden, seed=version), folder / f"m{version}.onnx"
                )
                workspace.registry.register(model, name="mlp")
            module = str(folder / "modules" / "mlp")
            rows: list[tuple[str, float, str]] = []

            _, t = edgekit("package", "mlp:1", "-o", module, cwd=folder, env=env)
            rows.append(("package mlp:1", t, ""))
            built, t = edgekit(
                "build", module, "--offline", "--base-image", "debian-local", cwd=folder, env=env
            )
            cold = t
            rows.append(("cold build", t, f"{built['cached_steps']}/{built['steps']} steps cached"))
            pushed, t = edgekit("push", module, "--registry", registry.address, cwd=folder, env=env)
            first_push = t
            rows.append(
                ("push", t, f"{pushed['layers'] - pushed['layers_existing']}/{pushed['layers']} layers sent")
            )

            _, t = edgekit("package", "mlp:2", "-o", module, cwd=folder, env=env)
            rows.append(("package mlp:2", t, ""))
            rebuilt, t = edgekit(
                "build", module, "--offline", "--base-image", "debian-local", cwd=folder, env=env
            )
            rows.append(
                ("model-only rebuild", t, f"{rebuilt['cached_steps']}/{rebuilt['steps']} steps cached")
            )
            repushed, t = edgekit("push", module, "--registry", registry.address, cwd=folder, env=env)
            rows.append(
                (
                    "model-only push",
                    t,
                    f"{repushed['layers'] - repushed['layers_existing']}/{repushed['layers']} sent",
                )
            )

            print(
                f"engine storage driver: {daemon.driver}; "
                f"model {(folder / 'm1.onnx').stat().st_size / 1e6:.1f} MB"
            )
            print(f"{'step':22} {'seconds':>8}  {'x cold build':>12}  {'x first push':>12}  note")
            for name, seconds, note in rows:
                print(
                    f"{name:22} {seconds:8.2f}  {seconds / cold:12.2f}  {seconds / first_push:12.2f}  {note}"
                )
            wheels = built.get("wheels_bytes")
            size = built["size"]
            if wheels:
                print(
                    f"image {size / 1e6:.0f} MB; device-side wheels {wheels / 1e6:.0f} MB "
                    f"(image/wheels {size / wheels:.1f}x)"
                )
            else:
                print(f"image {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
