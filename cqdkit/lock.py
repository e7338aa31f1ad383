"""One writer per output folder: an exclusive lock held while a command writes there.

``cqdkit run``, ``table``, ``tune``, ``multires`` and ``explain`` take the lock of their output folder
before writing anything; a second command on the same folder is refused with a message naming the owner.
The lock is an operating-system lock (``fcntl.flock``) on ``.cqdkit.lock`` in the folder, so it is released
when its process ends in any way, ``kill -9`` included: a lock file left behind by a dead process is
stale and simply taken over. The file records the owner's pid, host and command for the message.

Taking the lock also removes the temporary files that atomic writes of a killed process left behind
(see :func:`cqdkit.files.remove_stale_temporaries`): with the lock held, no one else is writing them.

Example:
    >>> with folder_lock(Path("/tmp/cqdkit-doctest-run")):
    ...     pass  # write the run's files here
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CqdkitError
from .files import OWNED_LIST, claim, is_temporary, remove_stale_temporaries

LOCK_NAME = ".cqdkit.lock"


class FolderBusyError(CqdkitError):
    """Another process is writing to the folder."""


@contextmanager
def folder_lock(folder: Path, *, what: str = "output folder") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the ``with`` block.

    In a multi-process run (``torchrun``) only the process of rank 0 writes, so only it takes the lock.

    Raises:
        FolderBusyError: another live process holds it.
        CqdkitError: the folder cannot be created or written (a read-only place, a file in the way).
    """
    folder = Path(folder)
    if int(os.environ.get("RANK", "0")) != 0:
        yield folder
        return
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CqdkitError(f"cannot write to the {what} {folder}: {error.strerror or error}") from None
    handle = _open_lock_file(folder / LOCK_NAME)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{folder} is in use by another cqdkit process ({_owner(handle)}); wait for it to finish, or "
                f"choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv[:6]}))
        handle.flush()
        check_files_are_ours(folder)
        adopt_earlier_output(folder)
        remove_stale_temporaries(folder)
        yield folder
    finally:
        handle.close()  # closing releases the lock; the file stays (a later owner overwrites it)


#: The files cqdkit writes at the top of an output folder, each with an entry every such file has.
OWN_FILES = {"config.json": "run", "results.json": "models", "table.json": "table", "tune.json": "methods",
             "table3.json": "models"}


def check_files_are_ours(folder: Path) -> None:
    """Refuse a folder whose ``config.json``, ``results.json`` (...) cqdkit did not write: a command would
    overwrite them.

    Raises:
        CqdkitError: naming the file and what it lacks.
    """
    for name, entry in OWN_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            content = None
        if not isinstance(content, dict) or entry not in content:
            raise CqdkitError(f"{path} was not written by cqdkit, or is damaged (expected a JSON object with {entry!r}); cqdkit "
                              f"does not overwrite it: choose another --out")


def adopt_earlier_output(folder: Path) -> None:
    """Hand cqdkit the files of an output folder written before cqdkit listed what it writes (no
    ``.cqdkit-files`` anywhere in it, but a ``config.json``, ``results.json``, ... that cqdkit wrote), so that
    such a run can still be resumed or reported: every regular file in it (never a link) becomes cqdkit's."""
    if not any((folder / name).is_file() for name in OWN_FILES) or any(folder.rglob(OWNED_LIST)):
        return
    written = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()
               and path.name != LOCK_NAME and not is_temporary(path)]
    claim(written)


def _open_lock_file(path: Path):  # noqa: ANN202 (an open text file)
    """Open (creating it if needed) the lock file, refusing anything but a regular file of its own: a link is
    never followed (its target may be a user's file), and a FIFO or a folder in its place is named."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as error:
        if path.is_symlink():
            problem = "is a symbolic link; cqdkit does not write through links"
        elif path.is_dir():
            problem = "is a folder, where cqdkit keeps the lock file of the folder"
        else:
            problem = f"cannot be opened for writing ({error.strerror or error})"
        raise CqdkitError(f"{path} {problem}: remove it, or choose another --out") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise CqdkitError(f"{path} is not a regular file (cqdkit keeps the lock file of the folder there): remove it, "
                          "or choose another --out")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "a+", encoding="utf-8")


def _owner(handle) -> str:  # noqa: ANN001 (an open text file)
    """Who holds the lock, from what the owner wrote into the file."""
    handle.seek(0)
    try:
        owner = json.loads(handle.read() or "{}")
        return f"pid {owner['pid']} on {owner['host']}"
    except (ValueError, KeyError, TypeError):
        return "owner unknown"
