"""Placeholder resolution never touches IoT Edge's own `$` syntax."""

from __future__ import annotations

from edge_toolkit.manifest import placeholders as ph
from edge_toolkit.manifest.variables import parse_env_text

ENV = {"upstream": "X", "UPSTREAM": "X", "edgeAgent": "X", "edgeHub": "X", "REG": "r.io", "TAG": "1"}


def test_braced_and_bare_variables_inside_strings() -> None:
    doc = {"a": "${REG}/img:${TAG}", "b": ["$REG", "pre-$TAG-post"], "c": 3}
    out, missing = ph.substitute(doc, ENV.get)
    assert out == {"a": "r.io/img:1", "b": ["r.io", "pre-1-post"], "c": 3}
    assert missing == []


def test_iot_edge_syntax_is_left_alone_even_when_variables_exist() -> None:
    doc = {
        "$edgeAgent": {"$schema-template": "4.0.0"},
        "$edgeHub": {
            "properties.desired": {
                "routes": {
                    "up": "FROM /messages/* INTO $upstream",
                    "shout": "FROM /messages/* WHERE $connectionDeviceId = 'd' INTO $UPSTREAM",
                    "obj": {"route": "FROM /messages/* INTO $upstream", "priority": 1},
                }
            }
        },
        "note": "lower-case $upstream and $edgeHub are never variables",
    }
    out, missing = ph.substitute(doc, ENV.get)
    assert out == doc
    assert missing == []


def test_braced_form_still_works_in_routes() -> None:
    out, _ = ph.substitute(
        {"routes": {"r": 'FROM /messages/* INTO BrokeredEndpoint("/modules/${TAG}/inputs/i")'}}, ENV.get
    )
    assert out["routes"]["r"].endswith('"/modules/1/inputs/i")')


def test_every_unresolved_reference_is_reported_with_its_path() -> None:
    _, missing = ph.substitute({"x": {"y": ["$NOPE", "${ALSO_NOT} and ${}"]}}, ENV.get)
    assert [(r.path, r.written, r.name) for r in missing] == [
        ("x.y[0]", "$NOPE", "NOPE"),
        ("x.y[1]", "${ALSO_NOT}", "ALSO_NOT"),
        ("x.y[1]", "${}", ""),
    ]


def test_kept_names_become_braced_references() -> None:
    out, missing = ph.substitute({"p": "$REG_PASSWORD"}, {}.get, keep=lambda n: n.endswith("PASSWORD"))
    assert out == {"p": "${REG_PASSWORD}"}
    assert missing == []


def test_bare_only_in_upper_case_convention() -> None:
    out, missing = ph.substitute({"a": "$Reg $reg $REGx $REG"}, {"REG": "v", "Reg": "w", "reg": "z"}.get)
    assert out == {"a": "$Reg $reg $REGx v"}
    assert missing == []


def test_module_refs() -> None:
    assert ph.parse_module_ref("MODULES.edge-inference") == ph.ModuleRef("edge-inference", None)
    assert ph.parse_module_ref("MODULES.x.arm64v8") == ph.ModuleRef("x", "arm64v8")
    assert ph.parse_module_ref("REG") is None


def test_env_file_syntax() -> None:
    text = "# c\nexport A=1\nB = 'two # not a comment'\nC=\"x\\ny\"\nD=plain # comment\n\nE=\n"
    assert parse_env_text(text) == {"A": "1", "B": "two # not a comment", "C": "x\ny", "D": "plain", "E": ""}
