"""Dynamic batching: stack concurrent requests for one model into one ONNX Runtime call.

Used only for models whose every input and output has a free leading dimension (the engine
decides), so stacking rows on axis 0 and splitting the outputs back at the same offsets gives each
request exactly the rows it would have got alone. Requests whose other dimensions differ (e.g.
symbolic image sizes) are never stacked together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from device_agent.errors import InferenceRuntimeError

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray], Sequence[str] | None], list[np.ndarray]]


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    rows: int
    key: tuple[tuple[str, tuple[int, ...], str], ...]
    future: asyncio.Future[list[np.ndarray]] = field(repr=False)


class Batcher:
    """Collects requests for up to ``max_delay_s`` or ``max_rows`` rows, then runs them at once.

    All outputs are computed per batch; callers pick the ones they asked for.
    """

    def __init__(
        self,
        *,
        run: RunFn,
        executor: Executor,
        max_rows: int,
        max_delay_s: float,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batcher",
    ) -> None:
        self._run = run
        self._executor = executor
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=name)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = next(iter(feeds.values())).shape[0]
        key = tuple(sorted((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()))
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(feeds, rows, key, future))
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._queue.put_nowait(None)
        await self._task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            if first is None:
                return
            batch = [first]
            rows = first.rows
            deadline = loop.time() + self._max_delay_s
            stop = False
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                if item is None:
                    stop = True
                    break
                if item.key != first.key or rows + item.rows > self._max_rows:
                    carry = item  # starts the next batch
                    break
                batch.append(item)
                rows += item.rows
            await self._execute(batch, rows)
            if stop:
                if carry is not None:
                    await self._execute([carry], carry.rows)
                return

    async def _execute(self, batch: list[_Pending], rows: int) -> None:
        loop = asyncio.get_running_loop()
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        if len(live) == 1:
            feeds = live[0].feeds
        else:
            feeds = {name: np.concatenate([p.feeds[name] for p in live]) for name in live[0].feeds}
        if self._on_batch is not None:
            self._on_batch(rows)
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, feeds, None)
        except Exception as exc:
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if len(live) == 1:
            if not live[0].future.done():
                live[0].future.set_result(outputs)
            return
        total = sum(p.rows for p in live)
        bad = [i for i, out in enumerate(outputs) if out.ndim == 0 or out.shape[0] != total]
        if bad:
            error = InferenceRuntimeError(
                "the model's outputs do not keep the batch as their first dimension; "
                "disable batching for this model"
            )
            for p in live:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        start = 0
        for p in live:
            end = start + p.rows
            if not p.future.done():
                p.future.set_result([out[start:end] for out in outputs])
            start = end
