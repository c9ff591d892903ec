"""Live progress for image builds and pushes: rich progress bars fed by the packager's events.

The packager reports plain events (:class:`BuildEvent`, :class:`PushEvent`); these classes turn
them into bars on stderr. On a terminal the bars update in place; in a log (CI, a pipe) rich prints
the finished state once, and the step lines above the bars keep the build readable there too.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

if TYPE_CHECKING:
    from edge_toolkit.packager.build import BuildEvent
    from edge_toolkit.packager.push import PushEvent

# Docker's push statuses that mean a layer is done, and how the bar labels them.
_LAYER_DONE = {"Pushed": "pushed", "Layer already exists": "exists", "Mounted from": "mounted"}


class _LiveBars:
    """Starts the bars on ``with`` entry and stops them on exit, whatever happened inside."""

    _progress: Progress

    def _started(self) -> None:
        """Called on entry, before the bars start (to print a title above them)."""

    def __enter__(self) -> Self:
        self._started()
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


class BuildProgress(_LiveBars):
    """One bar over the Dockerfile's steps, with each step (and whether it was cached) printed."""

    def __init__(self, console: Console, title: str) -> None:
        self._console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
        )
        self._task = self._progress.add_task(title, total=None, detail="")

    def __call__(self, event: BuildEvent) -> None:
        if event.kind == "phase":
            self._progress.update(self._task, detail=event.text)
            self._console.print(f"[bold]{event.text}[/bold]")
        elif event.kind == "step":
            text = " ".join(event.text.split())
            # The step line announces step N, so N-1 are done.
            self._progress.update(self._task, total=event.total, completed=event.step - 1, detail=text[:40])
            self._console.print(
                f"  step {event.step}/{event.total}: {text[:100]}", markup=False, soft_wrap=True
            )
        elif event.kind == "download":
            self._progress.update(self._task, detail=f"wheel {event.text[:40]}")
            self._console.print(f"  wheel {event.text}", markup=False, soft_wrap=True)
        elif event.kind == "cached":
            self._console.print("    [dim]cached[/dim]")

    def finish(self) -> None:
        task = self._progress.tasks[0]
        self._progress.update(self._task, completed=task.total or 0, detail="done")


class PushProgress(_LiveBars):
    """One bar per layer (bytes sent), closed with pushed / exists as the registry answers."""

    def __init__(self, console: Console, title: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[state]}"),
            console=console,
        )
        self._title = title
        self._layers: dict[str, TaskID] = {}
        self._totals: dict[str, int] = {}  # layer -> bytes, once the engine has said

    def _started(self) -> None:
        self._progress.console.print(f"[bold]{self._title}[/bold]")

    def __call__(self, event: PushEvent) -> None:
        if not event.layer:
            return
        task = self._layers.get(event.layer)
        if task is None:
            task = self._progress.add_task(f"  {event.layer}", total=None, state=event.status.lower())
            self._layers[event.layer] = task
        done = next((label for status, label in _LAYER_DONE.items() if event.status.startswith(status)), None)
        if event.total:
            self._totals[event.layer] = event.total
        total = self._totals.get(event.layer)
        if done is not None:
            # A layer the registry already had reports no size: show it as one full unit.
            self._progress.update(task, total=total or 1, completed=total or 1, state=done)
        elif total:
            self._progress.update(task, total=total, completed=event.current, state=event.status.lower())
        else:
            self._progress.update(task, state=event.status.lower())
