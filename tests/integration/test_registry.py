"""The model registry on real ONNX files, through the Python API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_toolkit import Workspace
from edge_toolkit.errors import InvalidModelError, InvalidNameError, ModelNotFoundError, WorkspaceError
from edge_toolkit.registry import ModelRef
from tests import onnx_models


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


def state(workspace: Workspace) -> tuple[list[tuple[object, ...]], list[str]]:
    """Everything the registry stores: catalog rows and blob file names."""
    _ = workspace.registry  # creates the tables on first use
    with sqlite3.connect(workspace.catalog_path) as conn:
        rows = [
            *conn.execute("SELECT * FROM model_versions ORDER BY name, version").fetchall(),
            *conn.execute("SELECT * FROM model_tags ORDER BY name, version, key").fetchall(),
        ]
    blobs = sorted(
        str(p.relative_to(workspace.root)) for p in (workspace.root / "blobs").rglob("*") if p.is_file()
    )
    return rows, blobs


def specs(entries: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(e["name"], e["datatype"], e["shape"]) for e in entries]


def test_register_reads_the_signature_of_an_mlp(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    model = workspace.registry.register(path, "mlp", tags={"stage": "dev"}, description="tiny")
    data = model.to_dict()
    assert (data["name"], data["version"], data["tags"], data["description"]) == (
        "mlp",
        1,
        {"stage": "dev"},
        "tiny",
    )
    assert specs(data["inputs"]) == [("input", "FP32", [-1, 64])]
    assert specs(data["outputs"]) == [("output", "FP32", [-1, 10])]
    assert data["inputs"][0]["dim_names"] == ["batch", None]
    assert data["opset"] == onnx_models.OPSET
    assert data["producer"] == "edgekit-tests"
    assert data["size"] == path.stat().st_size
    import hashlib

    assert data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_integer_inputs_and_several_outputs(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.integer_ops(), tmp_path / "ints.onnx")
    data = workspace.registry.register(path, "ints").to_dict()
    assert specs(data["inputs"]) == [("ids", "INT64", [-1, 4]), ("counts", "INT32", [-1, 4])]
    assert specs(data["outputs"]) == [("total", "INT64", [-1, 4]), ("flag", "BOOL", [-1, 4])]


def test_scalar_input_has_empty_shape(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.scalar_scale(), tmp_path / "scalar.onnx")
    data = workspace.registry.register(path, "scalar").to_dict()
    assert specs(data["inputs"]) == [("x", "FP32", [3]), ("scale", "FP32", [])]
    assert specs(data["outputs"]) == [("y", "FP32", [3]), ("scale_out", "FP32", [])]


def test_symbolic_batch_and_spatial_dimensions_keep_their_names(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.symbolic_spatial(), tmp_path / "seg.onnx")
    data = workspace.registry.register(path, "seg").to_dict()
    assert data["inputs"][0]["shape"] == [-1, 3, -1, -1]
    assert data["inputs"][0]["dim_names"] == ["N", None, "height", "width"]
    assert data["outputs"][0]["dim_names"] == ["N", None, "height", "width"]


def test_names_with_slashes_and_colons_and_fp16_uint8(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.odd_names(), tmp_path / "odd.onnx")
    data = workspace.registry.register(path, "odd").to_dict()
    assert specs(data["inputs"]) == [
        ("serving_default/input:0", "FP16", [-1, 2]),
        ("pixels:0", "UINT8", [1, 4]),
    ]
    assert specs(data["outputs"]) == [("model/output:0", "FP16", [-1, 2]), ("pixels/out", "UINT8", [1, 4])]
    # An unnamed dynamic dimension is -1 with no symbolic name.
    assert data["inputs"][0]["dim_names"] == [None, None]


def test_versions_count_up_and_identical_content_is_idempotent(workspace: Workspace, tmp_path: Path) -> None:
    first = onnx_models.save(onnx_models.mlp(seed=1), tmp_path / "a.onnx")
    second = onnx_models.save(onnx_models.mlp(seed=2), tmp_path / "b.onnx")
    copy = onnx_models.save(onnx_models.mlp(seed=1), tmp_path / "copy-of-a.onnx")
    registry = workspace.registry
    assert registry.register(first, "m").version == 1
    assert registry.register(second, "m").version == 2
    again = registry.register(copy, "m", tags={"note": "same bytes"})
    assert again.version == 1
    assert again.tags == {"note": "same bytes"}
    assert [m.version for m in registry.list("m")] == [2, 1]
    assert registry.get("m").version == 2
    # The same bytes under another name is a separate model sharing one blob.
    assert registry.register(first, "other").version == 1
    assert len(list((workspace.root / "blobs" / "sha256").rglob("*"))) == 2 + 2  # 2 fan-out folders + 2 blobs


def test_tag_download_and_delete(workspace: Workspace, tmp_path: Path) -> None:
    path = onnx_models.save(onnx_models.mlp(seed=3), tmp_path / "m.onnx")
    registry = workspace.registry
    model = registry.register(path, "m")
    registry.register(path, "shared")
    tagged = registry.tag("m:1", {"stage": "prod", "owner": "ml"})
    assert tagged.tags == {"owner": "ml", "stage": "prod"}
    assert registry.tag("m:1", {"stage": "dev"}).tags == {"owner": "ml", "stage": "dev"}

    out = registry.download("m", tmp_path / "out")  # a folder that does not exist yet: a file path
    assert out.read_bytes() == path.read_bytes()
    folder = tmp_path / "dl"
    folder.mkdir()
    assert registry.download("m:1", folder) == folder / "m-1.onnx"

    registry.delete("m:1")
    with pytest.raises(ModelNotFoundError, match="no model named 'm'"):
        registry.get("m")
    # The blob is still used by `shared`, so it stays; deleting that too removes it.
    assert model.blob_path is not None and model.blob_path.exists()
    registry.delete(ModelRef("shared", 1))
    assert not model.blob_path.exists()
    with pytest.raises(InvalidNameError, match="say which version"):
        registry.delete("shared")


def test_missing_version_names_the_existing_ones(workspace: Workspace, tmp_path: Path) -> None:
    workspace.registry.register(onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx"), "m")
    with pytest.raises(ModelNotFoundError, match=r"no version 9; existing versions: 1"):
        workspace.registry.get("m:9")


BAD_FILES = {
    "not-onnx.onnx": b"this is a text file, not a model\n",
    "empty.onnx": b"",
    "json.onnx": b'{"not": "a model"}',
}


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_bad_files_are_refused_and_nothing_changes(
    workspace: Workspace, tmp_path: Path, filename: str
) -> None:
    workspace.registry.register(onnx_models.save(onnx_models.mlp(), tmp_path / "good.onnx"), "m")
    before = state(workspace)
    bad = tmp_path / filename
    bad.write_bytes(BAD_FILES[filename])
    with pytest.raises(InvalidModelError, match=r"not an ONNX model|not a valid ONNX model"):
        workspace.registry.register(bad, "m")
    assert state(workspace) == before


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_models_are_refused(workspace: Workspace, tmp_path: Path, cut: float) -> None:
    data = onnx_models.mlp()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: int(len(data) * cut)])
    before = state(workspace)
    with pytest.raises(InvalidModelError):
        workspace.registry.register(bad, "m")
    assert state(workspace) == before


def test_corrupt_bytes_inside_a_model_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    data = bytearray(onnx_models.integer_ops())
    # Overwrite the graph's node op types region with junk: it still parses as protobuf at best,
    # and the checker must refuse it.
    middle = len(data) // 2
    data[middle : middle + 16] = b"\xff" * 16
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(bytes(data))
    before = state(workspace)
    with pytest.raises(InvalidModelError):
        workspace.registry.register(bad, "m")
    assert state(workspace) == before


def test_missing_path_and_folder_and_bad_name(workspace: Workspace, tmp_path: Path) -> None:
    before = state(workspace)
    with pytest.raises(InvalidModelError, match="no such file"):
        workspace.registry.register(tmp_path / "nope.onnx", "m")
    with pytest.raises(InvalidModelError, match="not a file"):
        workspace.registry.register(tmp_path, "m")
    good = onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx")
    for name in ("", "a/b", "x" * 200):
        with pytest.raises(InvalidNameError):
            workspace.registry.register(good, name)
    assert state(workspace) == before


def test_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not an edgekit workspace; run 'edgekit init'"):
        Workspace.open(tmp_path)
    broken = Workspace.create(tmp_path / "ws")
    (broken.root / "workspace.json").write_text("{broken")
    with pytest.raises(WorkspaceError, match="corrupt"):
        Workspace.open(broken.root)
    file_path = tmp_path / "file"
    file_path.write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        Workspace.create(file_path)


def test_create_is_idempotent_and_catalog_uses_wal(tmp_path: Path) -> None:
    first = Workspace.create(tmp_path / "ws")
    first.registry.register(onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx"), "m")
    second = Workspace.create(tmp_path / "ws")
    assert second.registry.get("m").version == 1
    with sqlite3.connect(second.catalog_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupt_catalog_is_reported_not_overwritten(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws")
    workspace.registry.register(onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx"), "m")
    for leftover in workspace.root.glob("catalog.sqlite-*"):
        leftover.unlink()
    junk = bytes(range(256)) * 20
    workspace.catalog_path.write_bytes(junk)
    with pytest.raises(WorkspaceError, match=r"is corrupt .*restore it from a backup"):
        Workspace.open(workspace.root).registry.list()
    assert workspace.catalog_path.read_bytes() == junk
