"""Golden-file tests: each case folder under tests/golden/manifest/cases is a solution (template,
modules/, vars.env); its expected output sits beside it as expected.<platform>.json (or expected-error.txt).

Regenerate after an intended change with EDGEKIT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import generate as gen
from edge_toolkit.manifest import validate

CASES = Path(__file__).parent.parent / "golden" / "manifest" / "cases"
UPDATE = bool(os.environ.get("EDGEKIT_UPDATE_GOLDEN"))
# The process environment must not leak into golden output: every case gets only its vars.env.
EMPTY_ENV: dict[str, str] = {}


def _generate(case: str, **kwargs: Any) -> gen.GeneratedManifest:
    folder = CASES / case
    env_file = folder / "vars.env"
    kwargs.setdefault("environ", EMPTY_ENV)
    return gen.generate(
        folder / "deployment.template.json",
        env_file=env_file if env_file.is_file() else None,
        **kwargs,
    )


def _compare(actual: str, expected_file: Path) -> None:
    if UPDATE:
        expected_file.write_text(actual, encoding="utf-8")
    assert expected_file.is_file(), f"no golden file {expected_file}; run with EDGEKIT_UPDATE_GOLDEN=1"
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("case", "platform"),
    [
        ("single-module", "amd64"),
        ("single-module", "arm64v8"),
        ("several-platforms", "amd64"),
        ("large-create-options", "amd64"),
        ("upstream-route", "amd64"),
        ("layered", "amd64"),
    ],
)
def test_generate_matches_golden(case: str, platform: str) -> None:
    manifest = _generate(case, platform=platform)
    _compare(manifest.to_json(), CASES / case / f"expected.{platform}.json")
    assert validate.validate(manifest.document) == []


def test_unresolved_lists_every_problem_with_its_path() -> None:
    with pytest.raises(ManifestError) as info:
        _generate("unresolved")
    _compare("\n".join(info.value.problems) + "\n", CASES / "unresolved" / "expected-error.txt")
    assert len(info.value.problems) == 4  # username, address, SITE_NAME, MODULES.ghost


def test_secrets_stay_references_unless_inlined(tmp_path: Path) -> None:
    kept = _generate("single-module")
    assert kept.secret_refs == ["CONTAINER_REGISTRY_PASSWORD"]
    assert "s3cret" not in kept.to_json()
    inline = _generate("single-module", inline_secrets=True)
    assert inline.inlined_secrets == ["CONTAINER_REGISTRY_PASSWORD"]
    creds = inline.document["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    assert creds["registryCredentials"]["registry"]["password"] == "s3cret pass"


def test_named_secret_is_kept_as_reference() -> None:
    manifest = _generate("single-module", secret_names=["CONTAINER_REGISTRY_USERNAME"])
    assert manifest.secret_refs == ["CONTAINER_REGISTRY_PASSWORD", "CONTAINER_REGISTRY_USERNAME"]
    assert '"username": "${CONTAINER_REGISTRY_USERNAME}"' in manifest.to_json()


def test_environment_overrides_env_file() -> None:
    manifest = _generate("single-module", environ={"CONTAINER_REGISTRY_USERNAME": "from-env"})
    assert '"username": "from-env"' in manifest.to_json()


def test_unknown_platform_is_refused() -> None:
    with pytest.raises(ManifestError, match="lists amd64, arm64v8; add arm32v7"):
        _generate("single-module", platform="arm32v7")


def test_default_output_follows_the_iot_edge_tooling(tmp_path: Path) -> None:
    template = tmp_path / "deployment.template.json"
    assert gen.default_output(template, "arm64v8") == tmp_path / "config" / "deployment.arm64v8.json"


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    manifest = _generate("single-module")
    out = gen.write(manifest, tmp_path / "config" / "deployment.amd64.json")
    assert json.loads(out.read_text()) == manifest.document
    assert [p.name for p in out.parent.iterdir()] == ["deployment.amd64.json"]


def test_dotenv_beside_the_template_is_read_by_default(tmp_path: Path) -> None:
    template = tmp_path / "deployment.template.json"
    template.write_text((CASES / "single-module" / "deployment.template.json").read_text())
    (tmp_path / ".env").write_text((CASES / "single-module" / "vars.env").read_text())
    manifest = gen.generate(template, modules_dir=CASES / "single-module" / "modules", environ={})
    assert '"username": "edgeuser"' in manifest.to_json()


def test_invalid_template_is_refused_with_json_paths() -> None:
    template = json.loads((CASES / "single-module" / "deployment.template.json").read_text())
    module = template["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["edgeinference"]
    module["restartPolicy"] = "sometimes"
    with pytest.raises(ManifestError) as info:
        gen.build(
            template,
            modules=gen.find_modules(CASES / "single-module" / "modules", {}),
            values={"CONTAINER_REGISTRY_USERNAME": "u", "CONTAINER_REGISTRY_ADDRESS": "a"},
        )
    assert any(
        p.startswith(
            "modulesContent.$edgeAgent.properties.desired.modules.edgeinference.restartPolicy: "
            "'sometimes' is not one of"
        )
        for p in info.value.problems
    )


def test_resolved_secrets_in_create_options_keep_the_json_valid() -> None:
    from edge_toolkit.manifest import create_options, secrets

    token = 'a"b\\c ' + "é" * 300  # a quote, a backslash, and enough to need another chunk
    options = {"Env": ["API_TOKEN=${API_TOKEN}"], "HostConfig": {"Memory": 1 << 30}}
    settings = {"image": "r/m:1", **create_options.split(create_options.minify(options))}
    document = {
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {"m": {"type": "docker", "settings": settings}}}}
        }
    }
    resolved = secrets.resolve(document, {"API_TOKEN": token})
    out = resolved["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["m"]["settings"]
    text = create_options.merge(out, "settings")
    assert text is not None and json.loads(text)["Env"] == [f"API_TOKEN={token}"]
    assert all(len(out[k].encode()) <= create_options.CHUNK_BYTES for k in create_options.chunk_keys(out))
    assert "${API_TOKEN}" in json.dumps(document)  # the input document is left as it was


def test_pin_digests_uses_the_pushed_digest_and_says_when_there_is_none(tmp_path: Path) -> None:
    from edge_toolkit.images import ImageCatalog
    from edge_toolkit.workspace import Workspace

    workspace = Workspace.create(tmp_path / "ws")
    with pytest.raises(ManifestError) as info:
        _generate("single-module", pin_digests=True, workspace=workspace)
    assert any("run 'edgekit push' for amd64 first" in p for p in info.value.problems), info.value.problems
    catalog = ImageCatalog(workspace)
    image = "localhost:5000/edgeinference:0.0.1-amd64"
    catalog.record_build("edgeinference", "amd64", image, "sha256:" + "1" * 64, [("mlp", 1, "a" * 64)])
    digest = "localhost:5000/edgeinference@sha256:" + "2" * 64
    catalog.record_push("edgeinference", "amd64", "sha256:" + "1" * 64, image, digest)
    manifest = _generate("single-module", pin_digests=True, workspace=workspace)
    modules = manifest.document["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    assert modules["edgeinference"]["settings"]["image"] == digest
    assert manifest.modules == {"edgeinference": digest}
