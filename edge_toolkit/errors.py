"""Exceptions raised by the workspace side.

    EdgeKitError                     base; the CLI prints its message on one line and exits non-zero
    ├── WorkspaceError               no workspace at the path, or it cannot be opened
    ├── RegistryError                the model registry refused an operation
    │   ├── InvalidModelError        the file is missing, not ONNX, or corrupt
    │   ├── InvalidNameError         a model name or reference is malformed
    │   └── ModelNotFoundError       no such model or version
    ├── PackagingError               a module folder could not be generated
    ├── DockerError                  talking to the Docker engine or a registry failed
    │   ├── DockerUnavailableError   no engine answers at DOCKER_HOST
    │   └── BuildError               an image build failed (carries the full log)
    ├── ManifestError                a deployment template/manifest is invalid (lists every problem)
    ├── DeployError                  applying a deployment to a hub or broker failed
    └── MissingExtraError            an optional dependency is not installed

Every message says what is wrong and what to do about it. Foreign exceptions (sqlite3, onnx,
docker, azure) are translated into this tree where they are first caught.
"""

from __future__ import annotations

from collections.abc import Sequence


class EdgeKitError(Exception):
    """Base class of every error edge-toolkit raises on purpose."""

    exit_code = 1


class WorkspaceError(EdgeKitError):
    """The workspace is missing or unusable."""

    exit_code = 3


class RegistryError(EdgeKitError):
    """The model registry refused an operation."""

    exit_code = 4


class InvalidModelError(RegistryError):
    """The model file is missing, not ONNX, or corrupt."""


class InvalidNameError(RegistryError):
    """A model name or NAME[:VERSION] reference is malformed."""


class ModelNotFoundError(RegistryError):
    """No model (or version) of that name exists."""

    exit_code = 5


class PackagingError(EdgeKitError):
    """A module folder could not be generated."""

    exit_code = 6


class DockerError(EdgeKitError):
    """The Docker engine or an image registry failed."""

    exit_code = 7


class DockerUnavailableError(DockerError):
    """No Docker engine answers."""


class BuildError(DockerError):
    """An image build failed; ``log`` holds the engine's full output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class ManifestError(EdgeKitError):
    """A deployment template or manifest is invalid; ``problems`` lists each one."""

    exit_code = 8

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class DeployError(EdgeKitError):
    """Applying a deployment failed."""

    exit_code = 9


class MissingExtraError(EdgeKitError):
    """An optional dependency is missing."""

    exit_code = 2

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'edge-toolkit[{extra}]'")
