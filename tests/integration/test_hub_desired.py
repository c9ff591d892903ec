"""Desired state against a local HTTP file server: download, verify, swap, fail safely, roll back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_agent.config import ModelConfig, RollbackConfig, parse_config
from device_agent.errors import ConfigError, InferenceRuntimeError
from device_agent.hub.desired import Reconciler, RuntimeSettings, parse_desired
from tests.fake_host import FakeHost


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _publish(folder: Path, name: str, content: bytes) -> str:
    (folder / name).write_bytes(content)
    return hashlib.sha256(content).hexdigest()


class Reports:
    def __init__(self) -> None:
        self.sections: list[dict[str, Any]] = []

    async def __call__(self, patch: dict[str, Any]) -> None:
        self.sections.append(patch["edgekit"])


def _reconciler(
    tmp_path: Path, host: FakeHost, rollback: RollbackConfig | None = None
) -> tuple[Reconciler, Reports]:
    config = parse_config({"data_dir": str(tmp_path / "data")})
    settings = RuntimeSettings.from_config(config)
    if rollback is not None:
        settings.rollback = rollback
    reports = Reports()
    return Reconciler(host, tmp_path / "data", settings, reports), reports


def test_download_verify_apply_and_safe_failures(tmp_path: Path, files: tuple[Path, str]) -> None:
    folder, base = files
    good = _publish(folder, "v1.onnx", b"ok one")
    bad = _publish(folder, "broken.onnx", b"bad model")
    host = FakeHost()
    reconciler, reports = _reconciler(tmp_path, host)

    def desired(revision: int, url: str, sha: str, version: str = "1") -> dict[str, Any]:
        return {
            "revision": revision,
            "models": [{"name": "m", "version": version, "url": url, "sha256": sha}],
        }

    async def scenario() -> list[dict[str, Any]]:
        return [
            await reconciler.apply(desired(1, f"{base}/v1.onnx", good)),
            await reconciler.apply(desired(1, f"{base}/v1.onnx", good)),  # the same again: no work
            await reconciler.apply(desired(2, f"{base}/v1.onnx", "0" * 64, "2")),
            await reconciler.apply(desired(3, f"{base}/broken.onnx", bad, "3")),
            await reconciler.apply(desired(4, f"{base}/missing.onnx", good, "4")),
            await reconciler.apply({"revision": 5, "models": [{"name": "m", "url": "x"}]}),
            await reconciler.apply(
                {"revision": 6, "settings": {"health": {"interval_s": 2}, "log_level": "info"}}
            ),
        ]

    applied, again, mismatch, unloadable, missing, invalid, settings = asyncio.run(scenario())
    assert applied["status"] == "applied" and applied["revision"] == 1
    assert applied["models"][0]["version"] == "1" and again == applied
    assert len(host.applied) == 1
    cached = Path(host.applied[0][0].path or "")
    assert cached.read_bytes() == b"ok one" and cached.is_relative_to(tmp_path / "data" / "models")
    assert mismatch["status"] == "failed" and "sha256 mismatch" in mismatch["error"]
    assert unloadable["status"] == "failed" and "not a loadable model" in unloadable["error"]
    assert missing["status"] == "failed" and "cannot download" in missing["error"]
    assert invalid["status"] == "failed" and "edgekit.models[0].sha256" in invalid["error"]
    for failure in (mismatch, unloadable, missing, invalid):
        assert [m["version"] for m in failure["models"]] == ["1"]  # the old model keeps serving
    assert settings["status"] == "applied" and reconciler.settings.health.interval_s == 2
    assert [s["status"] for s in reports.sections].count("applying") == 6
    assert not list((tmp_path / "data" / "staging").glob("*"))  # no partial download left behind


def test_new_version_with_too_many_errors_is_rolled_back(tmp_path: Path, files: tuple[Path, str]) -> None:
    folder, base = files
    v1 = _publish(folder, "v1.onnx", b"ok")
    v2 = _publish(folder, "v2.onnx", b"fail always")
    host = FakeHost()
    policy = RollbackConfig(enabled=True, error_rate_threshold=0.5, watch_window_s=5, min_requests=5)
    reconciler, reports = _reconciler(tmp_path, host, policy)

    async def scenario() -> None:
        await reconciler.apply(
            {"revision": 1, "models": [{"name": "m", "url": f"{base}/v1.onnx", "sha256": v1}]}
        )
        await reconciler.apply(
            {"revision": 2, "models": [{"name": "m", "version": "2", "url": f"{base}/v2.onnx", "sha256": v2}]}
        )
        for _ in range(6):
            with contextlib.suppress(InferenceRuntimeError):
                await host.infer_json("m", None, b"{}")
        for _ in range(100):
            if reports.sections[-1]["status"] == "rolled_back":
                break
            await asyncio.sleep(0.05)
        await reconciler.close()

    asyncio.run(scenario())
    last = reports.sections[-1]
    assert last["status"] == "rolled_back" and last["revision"] == 2
    assert "version 2 failed 100% of requests" in last["error"]
    assert [m["version"] for m in last["models"]] == ["1"]
    assert [m.version for m in host.served_models()] == ["1"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"revision": "x"}, "edgekit.revision"),
        ({"colour": 1}, "edgekit.colour"),
        ({"settings": {"log_level": "loud"}}, "edgekit.log_level"),
        ({"settings": {"server": {"port": 1}}}, "edgekit.settings.server"),
        ({"models": [{"name": "m", "path": "/x", "batching": {"max_batch_size": 0}}]}, "max_batch_size"),
    ],
)
def test_invalid_documents_name_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("[", r"\[")):
        parse_desired(document)


def test_models_from_a_document_keep_their_options() -> None:
    state = parse_desired(
        {
            "revision": 7,
            "models": [{"name": "m", "version": "3", "path": "/m.onnx", "batching": {"enabled": True}}],
        }
    )
    assert state.revision == 7 and state.models is not None
    assert state.models[0] == ModelConfig("m", "3", path="/m.onnx", batching=state.models[0].batching)
    assert state.models[0].batching.enabled and state.health is None
