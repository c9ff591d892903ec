"""Validation: one test per class of mistake, each checking the JSON path in the message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import template, validate
from edge_toolkit.manifest.validate import ModuleInterface

GOLDEN = Path(__file__).parent.parent / "golden" / "manifest" / "cases"
AGENT = "modulesContent.$edgeAgent.properties.desired"
HUB = "modulesContent.$edgeHub.properties.desired"


@pytest.fixture
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / "single-module" / "expected.amd64.json").read_text())
    return loaded


def _agent(doc: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = doc["modulesContent"]["$edgeAgent"]["properties.desired"]
    return section


def _hub(doc: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = doc["modulesContent"]["$edgeHub"]["properties.desired"]
    return section


def _only(doc: Any, **kwargs: Any) -> str:
    problems = validate.validate(doc, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def test_golden_manifest_is_valid(manifest: dict[str, Any]) -> None:
    assert validate.validate(manifest) == []
    validate.check(manifest)


def test_enum_values(manifest: dict[str, Any]) -> None:
    module = _agent(manifest)["modules"]["edgeinference"]
    module["restartPolicy"] = "sometimes"
    assert _only(manifest).startswith(
        f"{AGENT}.modules.edgeinference.restartPolicy: 'sometimes' is not one of"
    )
    module["restartPolicy"] = "always"
    module["status"] = "paused"
    assert _only(manifest).startswith(f"{AGENT}.modules.edgeinference.status: 'paused' is not one of")
    module["status"] = "running"
    module["imagePullPolicy"] = "always"
    assert "use one of the listed values" in _only(manifest)


def test_startup_order_needs_schema_1_1_and_a_range(manifest: dict[str, Any]) -> None:
    _agent(manifest)["modules"]["edgeinference"]["startupOrder"] = -1
    assert _only(manifest).startswith(f"{AGENT}.modules.edgeinference.startupOrder: -1 is less than")
    _agent(manifest)["modules"]["edgeinference"]["startupOrder"] = 1
    _agent(manifest)["schemaVersion"] = "1.0"
    problems = validate.validate(manifest)
    assert (
        f"{AGENT}.modules.edgeinference: Additional properties are not allowed "
        "('startupOrder' was unexpected); remove it or fix its spelling" in problems
    )


def test_unknown_schema_version(manifest: dict[str, Any]) -> None:
    _hub(manifest)["schemaVersion"] = "2.0"
    assert _only(manifest) == f"{HUB}.schemaVersion: '2.0' is not supported; use one of 1.0, 1.1, 1.2"


def test_route_objects_need_hub_1_1(manifest: dict[str, Any]) -> None:
    _hub(manifest)["schemaVersion"] = "1.0"
    assert _only(manifest).startswith(f"{HUB}.routes.healthToUpstream: ")


def test_env_value_types(manifest: dict[str, Any]) -> None:
    _agent(manifest)["modules"]["edgeinference"]["env"]["EDGEKIT_HTTP_PORT"] = {"value": {"n": 1}}
    assert _only(manifest).startswith(f"{AGENT}.modules.edgeinference.env.EDGEKIT_HTTP_PORT.value: ")
    _agent(manifest)["modules"]["edgeinference"]["env"]["EDGEKIT_HTTP_PORT"] = "8000"
    assert "change the value's type" in _only(manifest)


def test_missing_required_fields(manifest: dict[str, Any]) -> None:
    del _agent(manifest)["systemModules"]["edgeHub"]
    assert _only(manifest) == f"{AGENT}.systemModules: 'edgeHub' is a required property; add it"
    assert validate.validate({"nope": 1})[0].startswith("modulesContent: missing")


def test_routes_name_existing_modules_and_ports(manifest: dict[str, Any]) -> None:
    routes = _hub(manifest)["routes"]
    routes["bad"] = (
        'FROM /messages/modules/ghost/outputs/* INTO BrokeredEndpoint("/modules/edgeinference/inputs/infer")'
    )
    assert _only(manifest).startswith(
        f"{HUB}.routes.bad: names module 'ghost', which $edgeAgent does not declare"
    )
    routes["bad"] = "FROM /messages/modules/edgeinference/outputs/nosuch INTO $upstream"
    assert validate.validate(manifest) == []  # interface unknown: only the module is checked
    interfaces = {
        "edgeinference": ModuleInterface(frozenset({"infer"}), frozenset({"health", "inferResult"}))
    }
    assert _only(manifest, interfaces=interfaces) == (
        f"{HUB}.routes.bad: module 'edgeinference' has no output 'nosuch' "
        "(it has: health, inferResult); fix the route"
    )
    routes["bad"] = "FROM somewhere INTO $upstream"
    assert "source 'somewhere' is not one of" in _only(manifest)
    routes["bad"] = "SEND /messages/* TO $upstream"
    assert _only(manifest).endswith("expected 'FROM <source> [WHERE <condition>] INTO <sink>'")


def test_twin_for_undeclared_module(manifest: dict[str, Any]) -> None:
    manifest["modulesContent"]["stray"] = {"properties.desired": {}}
    assert _only(manifest).startswith("modulesContent.stray: a twin for module 'stray'")


def test_unresolved_image_placeholder(manifest: dict[str, Any]) -> None:
    _agent(manifest)["modules"]["edgeinference"]["settings"]["image"] = "${MODULES.edgeinference}"
    assert "is a template placeholder; run 'edgekit manifest gen'" in _only(manifest)


def test_create_options_chunks(manifest: dict[str, Any]) -> None:
    settings = _agent(manifest)["modules"]["edgeinference"]["settings"]
    settings["createOptions"] = "x" * 600
    problems = validate.validate(manifest)
    assert (
        f"{AGENT}.modules.edgeinference.settings.createOptions: 600 bytes; each createOptions "
        "chunk holds at most 512: run 'edgekit manifest gen' to split it" in problems
    )
    settings["createOptions"] = '{"a":'
    settings["createOptions02"] = "1}"
    assert "contiguous" in _only(manifest)
    del settings["createOptions02"]
    assert "not valid JSON when joined" in _only(manifest)
    settings["createOptions"] = "[1]"
    assert _only(manifest).endswith("must encode a JSON object of Docker create options")


def test_twin_size_and_key_limits(manifest: dict[str, Any]) -> None:
    desired = manifest["modulesContent"]["edgeinference"]["properties.desired"]
    desired["bad.key"] = 1
    assert _only(manifest).startswith(
        "modulesContent.edgeinference.properties.desired.bad.key: twin property names"
    )
    del desired["bad.key"]
    desired["blob"] = "x" * 5000
    assert _only(manifest).endswith("5000 bytes; IoT Hub allows 4096 per string value")
    desired["blob"] = ["y" * 4000] * 9
    assert "IoT Hub allows 32768 per twin" in _only(manifest)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(11):
        node["d"] = {}
        node = node["d"]
    desired["blob"] = deep
    assert "nested 11 levels deep" in _only(manifest)


def test_layered_deployment(manifest: dict[str, Any]) -> None:
    layered = json.loads((GOLDEN / "layered" / "expected.amd64.json").read_text())
    assert validate.validate(layered) == []
    bad = copy.deepcopy(layered)
    section = bad["content"]["modulesContent"]["$edgeAgent"]
    section["properties.desired.modules.edgeinference"]["restartPolicy"] = "sometimes"
    section["properties.desired.runtime"] = {}
    problems = validate.validate(bad)
    assert any(
        p.startswith(
            "content.modulesContent.$edgeAgent.properties.desired.modules.edgeinference."
            "restartPolicy: 'sometimes'"
        )
        for p in problems
    )
    assert any("'properties.desired.runtime' does not match" in p for p in problems)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ManifestError) as info:
        template.parse_json('{"routes": {"a": "x", "a": "y"}}', "m.json")
    assert info.value.problems == ["the key 'a' appears twice in one object; keep one"]
    with pytest.raises(ManifestError, match="line 1 column 2"):
        template.parse_json("{oops}", "m.json")
