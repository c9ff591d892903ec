"""edge-toolkit, workspace side: model registry, packager, manifests and deploy.

Notebook use::

    from edge_toolkit import Workspace
    ws = Workspace.open_or_create(".edgekit")
    version = ws.registry.register("model.onnx", name="resnet", tags={"stage": "dev"})
"""

from edge_toolkit.errors import EdgeKitError

__version__ = "0.1.0"
__all__ = ["EdgeKitError", "Workspace", "__version__"]


def __getattr__(name: str) -> object:
    # Imported lazily so `import edge_toolkit` stays cheap for the CLI's --help.
    if name == "Workspace":
        from edge_toolkit.workspace import Workspace

        return Workspace
    raise AttributeError(name)
