"""Run an Azure ML scoring script (``score.py`` with ``init()`` and ``run(raw_data)``) unchanged.

As under Azure ML: ``AZUREML_MODEL_DIR`` is set before the script is imported, ``init()`` runs once
at start, ``run`` receives the request body as text and its return value is sent back as JSON.
The script runs in the thread pool, one call at a time (AML scripts assume a single caller).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import orjson

from device_agent.errors import InferenceRuntimeError, InvalidRequestError, ModelLoadError

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "AZUREML_MODEL_DIR"


class ScoringScript:
    def __init__(self, script: Path, model_dir: Path, executor: Executor) -> None:
        self.script = script
        self.model_dir = model_dir
        self._executor = executor
        self._lock = threading.Lock()
        self._run: Callable[[str], Any] | None = None

    def load(self) -> None:
        """Import the script and call its ``init()`` (blocking; call it from the pool)."""
        if not self.script.is_file():
            raise ModelLoadError(f"scoring script {self.script} does not exist")
        os.environ[MODEL_DIR_ENV] = str(self.model_dir)
        # Scripts import their helper modules from their own folder, as under Azure ML.
        folder = str(self.script.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location("score", self.script)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"scoring script {self.script} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            run = getattr(module, "run", None)
            if not callable(run):
                raise ModelLoadError(f"scoring script {self.script} has no run(raw_data) function")
            init = getattr(module, "init", None)
            if callable(init):
                init()
        except ModelLoadError:
            raise
        except Exception as exc:  # user code: any failure means the script cannot serve
            raise ModelLoadError(f"scoring script {self.script} failed to start: {exc!r}") from exc
        self._run = run
        log.info("scoring script ready", extra={"script": str(self.script), "model_dir": str(self.model_dir)})

    async def score(self, body: bytes) -> bytes:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError("the /score body must be UTF-8 text") from None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, text)

    def _call(self, text: str) -> bytes:
        run = self._run
        if run is None:
            raise InferenceRuntimeError("the scoring script is not initialised")
        with self._lock:
            try:
                result = run(text)
            except Exception as exc:  # user code: report it, keep serving
                raise InferenceRuntimeError(f"score.py run() raised {exc!r}") from exc
        try:
            return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)
        except TypeError as exc:
            raise InferenceRuntimeError(
                f"score.py run() returned something not JSON-serialisable: {exc}"
            ) from exc


def _plain(value: Any) -> Any:
    # numpy scalars and other objects with tolist(); anything else is an error.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
