"""Registry credentials from the environment or a ``.env`` file (the IoT Edge tooling's names).

``CONTAINER_REGISTRY_USERNAME`` / ``CONTAINER_REGISTRY_PASSWORD`` (optionally
``CONTAINER_REGISTRY_SERVER`` to say which registry they are for). The environment wins over
``.env``. The password is never logged, printed or written anywhere: the value object hides it
from ``repr`` and only :meth:`auth_config` hands it to the engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_toolkit.errors import DockerError

USERNAME = "CONTAINER_REGISTRY_USERNAME"
PASSWORD = "CONTAINER_REGISTRY_PASSWORD"
SERVER = "CONTAINER_REGISTRY_SERVER"


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str = field(repr=False)
    server: str | None = None

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, ``export`` prefixes and matching quotes allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            # Name the line, never its content: it may hold a secret.
            raise DockerError(f"{path}:{number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def find_credentials(
    registry: str, environ: Mapping[str, str] | None = None, dotenv: Path | None = None
) -> RegistryCredentials | None:
    """Credentials for ``registry``, or None to push anonymously."""
    merged = read_dotenv(dotenv if dotenv is not None else Path.cwd() / ".env")
    merged.update(os.environ if environ is None else environ)
    username, password = merged.get(USERNAME), merged.get(PASSWORD)
    server = merged.get(SERVER) or None
    if not username and not password:
        return None
    if not username or not password:
        missing = USERNAME if not username else PASSWORD
        raise DockerError(f"registry credentials are incomplete: set {missing} too (environment or .env)")
    if server is not None and server != registry:
        return None  # they belong to another registry
    return RegistryCredentials(username=username, password=password, server=server)
