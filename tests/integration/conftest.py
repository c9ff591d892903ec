"""Session-wide servers for the integration tests: a private Docker engine and image registry.

Started on first use only (tests that do not ask for them pay nothing) and always stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docker_infra import DockerDaemon, Registry, docker_daemon, image_registry


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    # A short path: the socket path must fit in sun_path (108 bytes).
    with docker_daemon(tmp_path_factory.mktemp("dk")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with image_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture
def docker_env(dockerd: DockerDaemon, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """DOCKER_HOST for the private engine, in this process and for child processes."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    return {"DOCKER_HOST": dockerd.host}
