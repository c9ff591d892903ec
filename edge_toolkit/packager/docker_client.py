"""The one module that imports ``docker``: a small engine API with our errors.

Every call goes through :meth:`DockerEngine._call`, which maps the SDK's exceptions into
:class:`DockerError` / :class:`DockerUnavailableError`, so no other module sees a docker type.
Streams (build, push, pull) are yielded as the engine's JSON chunks; their ``error`` chunks are
left to the caller, because the engine reports build failures as data, not as exceptions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edge_toolkit.errors import DockerError, DockerUnavailableError, MissingExtraError

log = logging.getLogger(__name__)

# Builds under the vfs storage driver copy whole layers; the SDK's 60 s default is too short.
TIMEOUT_S = 600
T = TypeVar("T")


class DockerEngine:
    def __init__(self, base_url: str | None = None, timeout: int = TIMEOUT_S) -> None:
        try:
            import docker
            import docker.errors
        except ImportError as exc:
            raise MissingExtraError("docker", "workspace") from exc
        self._errors = docker.errors
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            if base_url is None:
                self._client = docker.from_env(timeout=timeout)
            else:
                self._client = docker.DockerClient(base_url=base_url, timeout=timeout)
            self._client.ping()
        except Exception as exc:  # the SDK raises DockerException, requests and OS errors here
            raise DockerUnavailableError(
                f"no Docker engine answers at {self.base_url} ({_short(exc)}); start Docker, "
                "or point DOCKER_HOST at a running engine (e.g. unix:///var/run/docker.sock)"
            ) from exc
        self.api = self._client.api

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except self._errors.ImageNotFound as exc:
            raise DockerError(f"{what}: no such image ({_short(exc)})") from exc
        except self._errors.NotFound as exc:
            raise DockerError(f"{what}: not found ({_short(exc)})") from exc
        except self._errors.APIError as exc:
            raise DockerError(f"{what}: the engine refused ({_short(exc)})") from exc
        except self._errors.DockerException as exc:
            raise DockerUnavailableError(
                f"{what}: lost the Docker engine at {self.base_url} ({exc})"
            ) from exc
        except OSError as exc:
            raise DockerUnavailableError(
                f"{what}: lost the Docker engine at {self.base_url} ({exc})"
            ) from exc

    def _stream(self, what: str, open_stream: Callable[[], Iterator[Any]]) -> Iterator[dict[str, Any]]:
        stream = self._call(what, open_stream)
        while True:
            try:
                chunk = self._call(what, lambda: next(stream, None))
            except DockerError:
                raise
            if chunk is None:
                return
            if isinstance(chunk, dict):
                yield chunk

    # images -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return dict(self._call("docker info", self.api.info))

    def build(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        *,
        platform: str,
        buildargs: dict[str, str],
        network_mode: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        return self._stream(
            f"building {tag}",
            lambda: self.api.build(
                path=str(context),
                dockerfile=dockerfile,
                tag=tag,
                platform=platform,
                buildargs=buildargs,
                network_mode=network_mode,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            ),
        )

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return dict(self._call(f"inspecting {ref}", lambda: self.api.inspect_image(ref)))

    def image_exists(self, ref: str) -> bool:
        try:
            self.api.inspect_image(ref)
        except self._errors.ImageNotFound:
            return False
        except self._errors.APIError as exc:
            if exc.status_code == 404:
                return False
            raise DockerError(f"inspecting {ref}: {_short(exc)}") from exc
        return True

    def tag(self, ref: str, repository: str, tag: str) -> None:
        self._call(f"tagging {ref}", lambda: self.api.tag(ref, repository, tag, force=True))

    def push(self, repository: str, tag: str, auth_config: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        return self._stream(
            f"pushing {repository}:{tag}",
            lambda: self.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config),
        )

    def pull(
        self, repository: str, tag: str, auth_config: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._stream(
            f"pulling {repository}:{tag}",
            lambda: self.api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth_config),
        )

    def remove_image(self, ref: str, force: bool = True) -> None:
        self._call(f"removing {ref}", lambda: self.api.remove_image(ref, force=force, noprune=False))

    def import_image(self, tar: Path, repository: str, tag: str) -> None:
        self._call(
            f"importing {tar}",
            lambda: self.api.import_image_from_file(str(tar), repository=repository, tag=tag),
        )

    def save_image(self, ref: str, destination: Path) -> None:
        def save() -> None:
            with destination.open("wb") as out:
                for chunk in self.api.get_image(ref, chunk_size=1 << 20):
                    out.write(chunk)

        self._call(f"saving {ref}", save)

    def load_image(self, tar: Path) -> None:
        def load() -> None:
            with tar.open("rb") as f:
                for chunk in self.api.load_image(f):
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise DockerError(f"loading {tar}: {chunk['error']}")

        self._call(f"loading {tar}", load)

    # containers ---------------------------------------------------------------------------
    def run(
        self,
        image: str,
        name: str | None = None,
        environment: dict[str, str] | None = None,
        network_mode: str = "host",
        user: str | None = None,
    ) -> str:
        """Start a detached container; returns its id. Host networking: see DESIGN.md §5."""

        def start() -> str:
            container = self.api.create_container(
                image,
                name=name,
                environment=environment or {},
                user=user,
                host_config=self.api.create_host_config(network_mode=network_mode),
            )
            self.api.start(container["Id"])
            return str(container["Id"])

        return self._call(f"running {image}", start)

    def container_state(self, container: str) -> dict[str, Any]:
        data = self._call(f"inspecting container {container}", lambda: self.api.inspect_container(container))
        return dict(data["State"])

    def logs(self, container: str) -> str:
        data = self._call(f"reading logs of {container}", lambda: self.api.logs(container))
        return bytes(data).decode("utf-8", "replace")

    def remove_container(self, container: str) -> None:
        self._call(
            f"removing container {container}", lambda: self.api.remove_container(container, force=True)
        )


def _short(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc)
    return text if len(text) < 400 else text[:400] + "…"
