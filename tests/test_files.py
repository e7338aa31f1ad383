"""Atomic writes: all or nothing, with the permissions of an ordinary file."""

from __future__ import annotations

import os
import stat

import pytest

from cqdkit.files import atomic_write


def test_new_file_gets_ordinary_permissions_not_owner_only(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "results.json", lambda temporary: open(temporary, "w").write("{}"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o644
    assert (tmp_path / "results.json").read_text() == "{}"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_text("old")

    def fails(temporary: str) -> None:
        open(temporary, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
