"""Offline wheel sets through the real pip and package index: progress lines, the cache, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_toolkit.errors import BuildError
from edge_toolkit.packager.wheels import download_wheels


def test_downloads_are_reported_one_by_one_and_cached(tmp_path: Path) -> None:
    heard: list[str] = []
    first = download_wheels(["six>=1.16"], "arm64v8", "3.11", cache=tmp_path, on_download=heard.append)
    assert [w.name.split("-")[0] for w in first.files] == ["six"] and not first.cached
    assert len(heard) == 1 and heard[0].startswith("six-1.") and heard[0].endswith(" MB)")
    again = download_wheels(["six>=1.16"], "arm64v8", "3.11", cache=tmp_path, on_download=heard.append)
    assert again.cached and again.files == first.files and len(heard) == 1  # no pip run at all


def test_a_missing_package_names_pips_error(tmp_path: Path) -> None:
    with pytest.raises(
        BuildError, match=r"failed: ERROR: No matching distribution found for edgekit-no-such"
    ) as caught:
        download_wheels(["edgekit-no-such-package-4f2a==1.0"], "amd64", "3.11", cache=tmp_path)
    assert "$ pip download" in caught.value.log
    assert not list((tmp_path / "wheels").glob("*/*.whl"))  # nothing half-made is left as a set
