"""Atomic writes: all or nothing, with the permissions of an ordinary file."""

from __future__ import annotations

import os
import stat
import threading
import time

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


def test_a_list_of_owned_files_that_is_a_fifo_or_a_link_is_not_read(tmp_path):
    os.mkfifo(tmp_path / OWNED_LIST)  # reading it would wait for a writer ...
    (tmp_path / "notes.md").write_text("the user's")

    def late_writer() -> None:  # ... and get from this one, after 5 s, a list naming the user's file
        time.sleep(5)
        try:
            descriptor = os.open(tmp_path / OWNED_LIST, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # nobody is reading: as it should be
        os.write(descriptor, b"notes.md\n")
        os.close(descriptor)

    writer = threading.Thread(target=late_writer, daemon=True)
    writer.start()
    began = time.monotonic()
    with pytest.raises(CqdkitError, match="notes.md"):
        atomic_write_text(tmp_path / "notes.md", "cqdkit's")
    assert time.monotonic() - began < 4  # it did not wait for the writer
    writer.join()
    other = tmp_path / "other"
    other.mkdir()
    (other / "grid.png").write_text("the user's")
    (tmp_path / "listing").write_text("grid.png\n")
    (other / OWNED_LIST).symlink_to(tmp_path / "listing")  # a planted list naming the user's file
    with pytest.raises(CqdkitError, match="grid.png"):
        atomic_write_text(other / "grid.png", "cqdkit's")
    assert (other / "grid.png").read_text() == "the user's"
