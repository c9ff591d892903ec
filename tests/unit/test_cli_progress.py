"""The build and push progress displays, fed the packager's events, rendered to a text console."""

from __future__ import annotations

import io

from rich.console import Console

from edge_toolkit.cli.progress import BuildProgress, PushProgress
from edge_toolkit.packager.build import BuildEvent
from edge_toolkit.packager.push import PushEvent


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, force_terminal=False, color_system=None), out


def test_build_progress_prints_steps_and_ends_complete() -> None:
    console, out = _console()
    with BuildProgress(console, "building m (amd64)") as progress:
        progress(BuildEvent("phase", "downloading device-side wheels for amd64"))
        progress(BuildEvent("download", "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl (16.8 MB)"))
        progress(BuildEvent("step", "FROM base AS deps", 1, 2))
        progress(BuildEvent("cached", "---> Using cache"))
        progress(BuildEvent("step", "COPY models/ /app/models/", 2, 2))
        progress.finish()
    text = out.getvalue()
    assert "wheel numpy-2.4.6" in text and "step 1/2: FROM base AS deps" in text and "cached" in text
    assert "2/2" in text and "done" in text


def test_push_progress_shows_bytes_per_layer_and_how_each_ended() -> None:
    console, out = _console()
    with PushProgress(console, "pushing m (amd64) to r:5000") as progress:
        progress(PushEvent("", "The push refers to repository [r:5000/m]"))
        progress(PushEvent("aaa", "Preparing"))
        progress(PushEvent("aaa", "Pushing", current=5_000_000, total=10_000_000))
        progress(PushEvent("aaa", "Pushed"))
        progress(PushEvent("bbb", "Layer already exists"))
    text = out.getvalue()
    assert "pushing m (amd64) to r:5000" in text
    aaa = next(line for line in text.splitlines() if "aaa" in line)
    assert "10.0" in aaa and "MB" in aaa and "pushed" in aaa, aaa
    assert "exists" in next(line for line in text.splitlines() if "bbb" in line)
