"""Atomic writes: all or nothing, with the permissions of an ordinary file."""

from __future__ import annotations

import os
import stat

import pytest

from cqdkit.errors import CqdkitError
from cqdkit.files import OWNED_LIST, atomic_write, atomic_write_text, claim, remove_ours


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
    atomic_write_text(target, "old")

    def fails(temporary: str) -> None:
        open(temporary, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [OWNED_LIST, "model.safetensors"]


def test_a_file_cqdkit_did_not_write_is_never_replaced(tmp_path):
    users = tmp_path / "grid.png"
    users.write_bytes(b"the user's picture")
    with pytest.raises(CqdkitError, match="grid.png.*did not write"):
        atomic_write_text(users, "cqdkit's grid")
    assert users.read_bytes() == b"the user's picture"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".cqdkit-tmp")]


def test_a_file_cqdkit_wrote_is_replaced_and_a_claimed_one_too(tmp_path):
    atomic_write_text(tmp_path / "report.md", "first")
    atomic_write_text(tmp_path / "report.md", "second")
    assert (tmp_path / "report.md").read_text() == "second"
    (tmp_path / "notes.md").write_text("mine")
    claim([tmp_path / "notes.md"])  # what --force does
    atomic_write_text(tmp_path / "notes.md", "replaced on purpose")
    assert (tmp_path / "notes.md").read_text() == "replaced on purpose"


def test_no_write_goes_through_or_replaces_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.json").symlink_to(outside)
    with pytest.raises(CqdkitError, match="symbolic link"):
        atomic_write_text(folder / "results.json", "{}")
    claim([folder / "results.json"])  # listing a link's name does not make the link cqdkit's
    with pytest.raises(CqdkitError, match="symbolic link"):
        atomic_write_text(folder / "results.json", "{}")
    assert outside.read_text() == "precious" and (folder / "results.json").is_symlink()


def test_remove_ours_leaves_a_users_file_alone(tmp_path):
    atomic_write_text(tmp_path / "epoch-0001.json", "{}")
    (tmp_path / "epoch-0002.json").write_text("the user's")
    remove_ours(tmp_path / "epoch-0001.json")
    remove_ours(tmp_path / "epoch-0002.json")
    assert not (tmp_path / "epoch-0001.json").exists() and (tmp_path / "epoch-0002.json").read_text() == "the user's"
