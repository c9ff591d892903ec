"""`edgekit model …` as a user runs it: real processes, exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import onnx_models

EDGEKIT = [sys.executable, "-m", "edge_toolkit.cli.main"]


def edgekit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_HOME"}
    full_env.update(env or {})
    return subprocess.run(
        [*EDGEKIT, *args], check=False, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def ok_json(*args: str, cwd: Path) -> object:
    result = edgekit(*args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_register_show_list_tag_download_delete(tmp_path: Path) -> None:
    onnx_models.save(onnx_models.integer_ops(), tmp_path / "ints.onnx")
    assert edgekit("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".edgekit" / "workspace.json").is_file()

    registered = ok_json(
        "model", "register", "ints.onnx", "--name", "ints", "--tag", "stage=dev", cwd=tmp_path
    )
    assert isinstance(registered, dict) and registered["version"] == 1

    shown = ok_json("model", "show", "ints", cwd=tmp_path)
    assert isinstance(shown, dict)
    assert {"name", "version", "sha256", "inputs", "outputs"} <= set(shown)
    assert shown["inputs"][0] == {
        "name": "ids",
        "datatype": "INT64",
        "shape": [-1, 4],
        "dim_names": ["batch", None],
    }

    table = edgekit("model", "list", cwd=tmp_path)
    assert table.returncode == 0 and "ints" in table.stdout and "stage=dev" in table.stdout
    human = edgekit("model", "show", "ints:1", cwd=tmp_path)
    assert "INT32" in human.stdout and "counts" in human.stdout and "[batch, 4]" in human.stdout

    tagged = ok_json("model", "tag", "ints:1", "owner=ml", cwd=tmp_path)
    assert isinstance(tagged, dict) and tagged["tags"] == {"owner": "ml", "stage": "dev"}

    downloaded = ok_json("model", "download", "ints:1", "-o", "copy.onnx", cwd=tmp_path)
    assert isinstance(downloaded, dict)
    assert (tmp_path / "copy.onnx").read_bytes() == (tmp_path / "ints.onnx").read_bytes()

    assert ok_json("model", "delete", "ints:1", cwd=tmp_path) == {"deleted": {"name": "ints", "version": 1}}
    assert ok_json("model", "list", cwd=tmp_path) == []


def test_workspace_option_and_env(tmp_path: Path) -> None:
    onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx")
    by_option = edgekit("--workspace", "wsA", "model", "register", "m.onnx", "-n", "m", cwd=tmp_path)
    assert by_option.returncode == 0 and (tmp_path / "wsA" / "catalog.sqlite").exists()
    by_env = edgekit(
        "model", "register", "m.onnx", "-n", "m", cwd=tmp_path, env={"EDGEKIT_HOME": str(tmp_path / "wsB")}
    )
    assert by_env.returncode == 0 and (tmp_path / "wsB" / "catalog.sqlite").exists()


def test_a_folder_or_file_that_is_not_a_workspace_is_refused_and_left_alone(tmp_path: Path) -> None:
    onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx")
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    for target, message in ((project, "is not an edgekit workspace and holds other files (notes.txt)"),
                            (tmp_path / "m.onnx", "exists and is not a folder")):  # fmt: skip
        result = edgekit("-w", str(target), "model", "register", "m.onnx", "-n", "m", cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]
    # `init` is the explicit way to make such a folder a workspace.
    assert edgekit("-w", str(project), "init", cwd=tmp_path).returncode == 0
    assert edgekit("-w", str(project), "model", "register", "m.onnx", "-n", "m", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "register", "missing.onnx", "--name", "m"], "no such file"),
        (["model", "register", "garbage.onnx", "--name", "m"], "not an ONNX model"),
        (["model", "register", "good.onnx", "--name", "a/b"], "invalid model name"),
        (["model", "register", "good.onnx", "--name", ""], "model name is empty"),
        (["model", "register", "good.onnx", "--name", "x" * 129], "limit is 128"),
        (["model", "show", "m:5"], "no version 5"),
        (["model", "show", "nothing"], "no model named"),
        (["model", "delete", "m:0"], "invalid version"),
    ],
)
def test_errors_are_one_line_non_zero_and_change_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    onnx_models.save(onnx_models.mlp(), tmp_path / "good.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 10)
    assert edgekit("model", "register", "good.onnx", "--name", "m", cwd=tmp_path).returncode == 0
    catalog = tmp_path / ".edgekit" / "catalog.sqlite"
    blobs_before = sorted(p.name for p in (tmp_path / ".edgekit" / "blobs").rglob("*") if p.is_file())
    with sqlite3.connect(catalog) as conn:
        rows_before = conn.execute("SELECT * FROM model_versions").fetchall()

    result = edgekit(*args, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr

    with sqlite3.connect(catalog) as conn:
        assert conn.execute("SELECT * FROM model_versions").fetchall() == rows_before
    assert sorted(p.name for p in (tmp_path / ".edgekit" / "blobs").rglob("*") if p.is_file()) == blobs_before


def test_a_folder_that_is_not_a_workspace_is_reported(tmp_path: Path) -> None:
    result = edgekit("--workspace", str(tmp_path), "model", "list", cwd=tmp_path)
    assert result.returncode == 3
    assert "is not an edgekit workspace; run 'edgekit init'" in result.stderr
    assert not (tmp_path / "catalog.sqlite").exists()


def test_eight_concurrent_registers_get_eight_distinct_versions(tmp_path: Path) -> None:
    assert edgekit("init", cwd=tmp_path).returncode == 0
    for i in range(8):
        onnx_models.save(onnx_models.mlp(seed=100 + i), tmp_path / f"m{i}.onnx")
    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_HOME"}
    # Every process waits for the same start time, so the registrations truly overlap.
    start_at = time.time() + 3.0
    launcher = (
        "import sys, time, onnx; from edge_toolkit.cli.main import main;"
        "start=float(sys.argv[1]); time.sleep(max(0.0, start-time.time())); main(sys.argv[2:])"
    )
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                launcher,
                str(start_at),
                "model",
                "register",
                f"m{i}.onnx",
                "-n",
                "shared",
                "--json",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [o[1] for o in outputs]
    versions = sorted(json.loads(out)["version"] for out, _ in outputs)
    assert versions == list(range(1, 9))
    with sqlite3.connect(tmp_path / ".edgekit" / "catalog.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        shas = conn.execute("SELECT sha256 FROM model_versions WHERE name = 'shared'").fetchall()
    assert len({s[0] for s in shas}) == 8
    listed = ok_json("model", "list", "shared", cwd=tmp_path)
    assert isinstance(listed, list) and len(listed) == 8
