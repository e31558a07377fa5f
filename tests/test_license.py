"""The licence: an MIT LICENSE file and the same licence in the installed package metadata."""
import importlib.metadata

from conftest import REPO


def test_license_file_is_mit():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_installed_metadata_declares_mit():
    meta = importlib.metadata.metadata("hienet")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File")
