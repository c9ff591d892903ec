"""How long `register` takes for 10 MB and 100 MB models, against copying the same file.

The baseline (a plain `shutil.copyfile` plus `hashlib.sha256` of the file, measured in the same
run) is the least any registry must do; the ratio shows what parsing, checking and cataloguing
add. Run: `.venv/bin/python benchmarks/register.py [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_toolkit import Workspace
from tests import onnx_models


def baseline(path: Path, folder: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(path, folder / "copy.bin")
    hashlib.sha256(path.read_bytes()).hexdigest()
    elapsed = time.perf_counter() - started
    (folder / "copy.bin").unlink()
    return elapsed


def register(path: Path, folder: Path, seed: int) -> tuple[float, float]:
    workspace = Workspace.create(folder / f"ws-{seed}")
    started = time.perf_counter()
    workspace.registry.register(path, "bench")
    first = time.perf_counter() - started
    started = time.perf_counter()
    workspace.registry.register(path, "bench")  # identical content: idempotent path
    again = time.perf_counter() - started
    shutil.rmtree(workspace.root)
    return first, again


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header = ("size", "copy+sha256 s", "register s", "re-register s", "register/baseline")
    print("{:>8} {:>14} {:>11} {:>14} {:>18}".format(*header))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for megabytes in (10, 100):
            path = onnx_models.save(
                onnx_models.padded(megabytes * 1024 * 1024), folder / f"m{megabytes}.onnx"
            )
            base, reg, again = [], [], []
            for i in range(args.repeat):  # interleaved, so machine noise hits both alike
                base.append(baseline(path, folder))
                first, second = register(path, folder, i)
                reg.append(first)
                again.append(second)
            b, r, a = statistics.median(base), statistics.median(reg), statistics.median(again)
            print(f"{megabytes:>6}MB {b:>14.3f} {r:>11.3f} {a:>14.3f} {r / b:>17.1f}x")


if __name__ == "__main__":
    main()
