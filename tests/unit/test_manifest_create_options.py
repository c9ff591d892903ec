"""createOptions chunking: property tests for the split/merge pair and the limits."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import create_options as co

# Up to the 8 x 512-byte budget in characters of 1 to 4 UTF-8 bytes.
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=1100)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_split_then_merge_is_identity_and_chunks_fit(text: str) -> None:
    try:
        chunks = co.split(text)
    except ManifestError:
        assert len(text.encode("utf-8")) > co.CHUNK_BYTES * (co.MAX_CHUNKS - 1)
        return
    assert co.merge(chunks) == text
    assert 1 <= len(chunks) <= co.MAX_CHUNKS
    assert list(chunks) == [co.chunk_key(i) for i in range(len(chunks))]
    encoded = [c.encode("utf-8") for c in chunks.values()]
    assert all(len(b) <= co.CHUNK_BYTES for b in encoded)
    # Never inside a character: each chunk's bytes decode alone, and chunks are filled greedily
    # (the next character did not fit), so the count is the smallest possible.
    for raw in encoded:
        raw.decode("utf-8")
    values = list(chunks.values())
    for current, following in itertools.pairwise(values):
        assert len(current.encode()) + len(following[0].encode()) > co.CHUNK_BYTES


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.integers() | st.text(max_size=30), max_size=30))
def test_objects_round_trip_through_settings(options: dict[str, object]) -> None:
    settings_ = {"image": "x", "createOptions": options}
    co.apply_to_settings(settings_, "m.settings")
    assert json.loads(co.merge(settings_) or "") == options
    co.apply_to_settings(settings_, "m.settings")  # idempotent on its own output
    assert json.loads(co.merge(settings_) or "") == options


def test_multibyte_character_on_the_boundary_moves_whole() -> None:
    text = "a" * 511 + "€" + "b"
    chunks = co.split(text)
    assert chunks == {"createOptions": "a" * 511, "createOptions01": "€b"}


def test_too_large_names_the_size_and_path() -> None:
    with pytest.raises(ManifestError) as info:
        co.split("x" * 4097, "mods.x.settings.createOptions")
    assert info.value.problems == [
        "mods.x.settings.createOptions: createOptions is 4097 bytes minified; IoT Edge accepts at most "
        "8 chunks of 512 bytes (4096 bytes): move settings into environment variables or the module twin"
    ]
    assert co.split("x" * 4096)["createOptions07"] == "x" * 512


def test_merge_refuses_gaps_and_non_strings() -> None:
    with pytest.raises(ManifestError, match="contiguous"):
        co.merge({"createOptions": "{", "createOptions02": "}"})
    with pytest.raises(ManifestError, match="must be a string"):
        co.merge({"createOptions": {"a": 1}, "createOptions01": "x"})
    assert co.merge({"image": "x"}) is None


def test_object_with_stray_chunks_is_refused() -> None:
    with pytest.raises(ManifestError, match="createOptions01 must not be set"):
        co.apply_to_settings({"createOptions": {}, "createOptions01": "x"}, "s")
