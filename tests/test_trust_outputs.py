"""Issue #25, kinds 1 and 6: no cqdkit command replaces, deletes or writes through a link to a file it did not
write, and a lock file that is not a plain file is named."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from cqdkit.errors import CqdkitError
from cqdkit.files import OWNED_LIST, TEMPORARY_SUFFIX, atomic_write_text, remove_stale_temporaries
from cqdkit.lock import LOCK_NAME, folder_lock
from tests.data_fixtures import write_image

from .cli_checks import invoke, one_line_error
from .test_run_cli import TINY


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


# -- a user's files in an output folder ----------------------------------------------------------------------


@pytest.mark.parametrize("users_name", ["grid.png", "bird_x.png", "bird_z.png"])
def test_degrade_refuses_a_users_file_before_writing_anything(tmp_path, users_name):
    write_image(tmp_path / "bird.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / users_name).write_bytes(b"the user's own picture")
    message = one_line_error(invoke("degrade", "gray", tmp_path / "bird.png", "--out", photos))
    assert users_name in message and "did not write" in message
    assert (photos / users_name).read_bytes() == b"the user's own picture"
    assert sorted(p.name for p in photos.iterdir()) == [users_name]  # nothing else written either


def test_degrade_writes_again_over_its_own_files_and_keeps_pairs_of_same_named_images_apart(tmp_path):
    write_image(tmp_path / "a" / "bird.png", seed=1)
    write_image(tmp_path / "b" / "bird.png", seed=2)
    out = tmp_path / "out"
    for _ in range(2):  # the second time over what the first wrote
        result = invoke("degrade", "gray", tmp_path / "a" / "bird.png", tmp_path / "b" / "bird.png", "--out", out)
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir() if p.name != OWNED_LIST)
    assert names == ["bird-2_x.png", "bird-2_z.png", "bird_x.png", "bird_z.png", "grid.png"]
    assert (out / "bird_x.png").read_bytes() != (out / "bird-2_x.png").read_bytes()


def test_convert_weights_refuses_a_users_file_or_sidecar_before_converting(tmp_path):
    source = tmp_path / "net.mat"
    source.write_bytes(b"not read: the check comes first")
    for name in ("w.safetensors", "w.json"):
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        (folder / name).write_text("the user's")
        message = one_line_error(invoke("convert-weights", source, "--arch", "vggm", "--out", folder / "w.safetensors"))
        assert name in message and "did not write" in message
        assert (folder / name).read_text() == "the user's"


def test_a_link_planted_where_cqdkit_writes_is_neither_followed_nor_replaced(tmp_path):
    write_image(tmp_path / "bird.png")
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.png").symlink_to(precious)
    message = one_line_error(invoke("degrade", "gray", tmp_path / "bird.png", "--out", out))
    assert "grid.png" in message and "symbolic link" in message
    assert precious.read_bytes() == b"precious" and (out / "grid.png").is_symlink()


def test_a_new_run_in_a_folder_holding_a_runs_results_but_no_config_is_refused(tmp_path):
    out = tmp_path / "run"
    assert invoke("run", "--degrade", "gray", "--method", "b", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    (out / "config.json").unlink()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    message = one_line_error(invoke("run", "--degrade", "gray", "--method", "b", *TINY, "--epochs", "1", "--out", out))
    assert "no config.json" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME} == before


# -- the lock file ----------------------------------------------------------------------------------------------


def lock_taken(folder: Path) -> str:
    with pytest.raises(CqdkitError) as caught:
        with folder_lock(folder):
            pass
    return str(caught.value)


def test_a_lock_file_that_is_a_link_is_not_written_through(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("the user's")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(users)
    message = lock_taken(tmp_path / "run")
    assert LOCK_NAME in message and "symbolic link" in message
    assert users.read_text() == "the user's"


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_file_that_is_not_a_file_is_named_at_once(tmp_path, kind):
    lock = tmp_path / LOCK_NAME
    lock.mkdir() if kind == "folder" else os.mkfifo(lock)
    message = lock_taken(tmp_path)
    assert str(lock) in message


def test_an_immutable_lock_file_is_named(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text("")
    if subprocess.run(["chattr", "+i", str(lock)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        if os.geteuid() != 0 and os.access(lock, os.W_OK):
            pytest.skip("immutability is not enforced here")
        assert str(lock) in lock_taken(tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(lock)], capture_output=True)


# -- temporaries of killed writers --------------------------------------------------------------------------------


def test_a_killed_writers_temporary_is_removed_when_the_file_is_written_again(tmp_path):
    stale = tmp_path / f".student.onnx.abc123{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"half an export")  # nobody holds its lock: its writer died
    atomic_write_text(tmp_path / "student.onnx", "a whole export")
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [OWNED_LIST, "student.onnx"]


def test_a_temporary_being_written_is_left_alone(tmp_path):
    live = tmp_path / f".student.onnx.abc123{TEMPORARY_SUFFIX}"
    live.write_bytes(b"being written")
    with open(live, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # a live writer holds it
        atomic_write_text(tmp_path / "student.onnx", "another export")
        assert remove_stale_temporaries(tmp_path) == []
        assert live.exists()
    assert remove_stale_temporaries(tmp_path) == [live]


def test_a_run_written_before_cqdkit_listed_its_files_can_still_be_resumed_and_reported(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--degrade", "gray", "--method", "b", *TINY, "--epochs", "1", "--no-report", "--out", out]
    assert invoke(*args).exit_code == 0
    for listing in out.rglob(OWNED_LIST):
        listing.unlink()  # as an earlier cqdkit left the folder
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert invoke("report", out, "--examples", "0").exit_code == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's folder is never adopted")
    with folder_lock(tmp_path / "mine"):
        pass
    assert not (tmp_path / "mine" / OWNED_LIST).exists()


def test_a_finished_models_damaged_weights_file_is_written_again_on_resume(tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = ["run", "--degrade", "gray", "--method", "b", *TINY, "--epochs", "1", "--no-report", "--out", out]
    assert invoke(*args).exit_code == 0
    weights = out / "b" / "model.safetensors"
    intact = {name: tensor.clone() for name, tensor in load_file(weights).items()}  # not mapped: it is cut below
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short by a crash or a copy
    assert invoke(*args, "--resume").exit_code == 0
    assert all((load_file(weights)[name] == tensor).all() for name, tensor in intact.items())


def test_a_checkpoint_pointer_that_is_a_fifo_is_passed_over_not_waited_on(tmp_path):
    import sys

    out = tmp_path / "run"
    args = ["run", "--degrade", "gray", "--method", "b", *TINY, "--epochs", "1", "--no-report", "--out", str(out)]
    assert invoke(*args).exit_code == 0
    (out / "b" / "latest.json").unlink()
    os.mkfifo(out / "b" / "latest.json")
    done = subprocess.run([sys.executable, "-m", "cqdkit", *args, "--resume"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode in (0, 2) and "Traceback" not in done.stderr, done.stderr  # resumed or refused
    said = " ".join(done.stderr.split())  # (rich wraps long lines)
    assert "named pipe (FIFO)" in said  # the warning (resumed from the newest intact checkpoint) or the error
