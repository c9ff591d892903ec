"""Pure parts of the registry: names, NAME[:VERSION] references, tags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_toolkit.errors import InvalidNameError
from edge_toolkit.registry import ModelRef, parse_tags, validate_name


@pytest.mark.parametrize("name", ["mlp", "resnet-50", "a.b_c", "X" * 128, "7up"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("a/b", "path separators"),
        ("a\\b", "invalid model name"),
        ("../etc", "invalid model name"),
        ("-lead", "invalid model name"),
        ("has space", "invalid model name"),
        ("x" * 129, "limit is 128"),
    ],
)
def test_invalid_names_say_why(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError, match=fragment):
        validate_name(name)


def test_model_ref_forms() -> None:
    assert ModelRef.parse("mlp") == ModelRef("mlp", None)
    assert ModelRef.parse("mlp:latest") == ModelRef("mlp", None)
    assert ModelRef.parse("mlp:3") == ModelRef("mlp", 3)
    for bad in ("mlp:0", "mlp:x", "mlp:-1", ":3"):
        with pytest.raises(InvalidNameError):
            ModelRef.parse(bad)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True), st.integers(1, 10**6))
def test_model_ref_round_trip(name: str, version: int) -> None:
    assert ModelRef.parse(str(ModelRef(name, version))) == ModelRef(name, version)


def test_parse_tags() -> None:
    assert parse_tags(["stage=dev", "owner=ml=team", "empty="]) == {
        "stage": "dev",
        "owner": "ml=team",
        "empty": "",
    }
    with pytest.raises(InvalidNameError, match="KEY=VALUE"):
        parse_tags(["novalue"])
    with pytest.raises(InvalidNameError, match="tag key"):
        parse_tags(["bad key=1"])
