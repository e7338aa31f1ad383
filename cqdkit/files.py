"""Atomic file writes that never touch a user's files.

Every file cqdkit writes (checkpoints, weights, caches, JSON, reports, figures) goes through
:func:`atomic_write` or one of the helpers built on it, so readers see the old file or the new one, never a
torn one. Each folder cqdkit writes into gets a list of the names it wrote there (:data:`OWNED_LIST`), and a
file that exists but is not on that list -- a user's ``grid.png`` in a ``--out`` folder, a symbolic link --
is never replaced or deleted: the write stops with an error naming it (:func:`check_ours`). ``--force``
options hand such files to cqdkit on purpose (:func:`claim`)::

    >>> from pathlib import Path
    >>> atomic_write_json(Path("/tmp/cqdkit-doctest.json"), {"done": True})
    >>> Path("/tmp/cqdkit-doctest.json").read_text()
    '{\\n  "done": true\\n}\\n'
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import CqdkitError, DataError

if TYPE_CHECKING:
    import torch

#: The suffix of :func:`atomic_write`'s temporary files (see :func:`remove_stale_temporaries`).
TEMPORARY_SUFFIX = ".cqdkit-tmp"


#: The file in each folder that lists, one name per line, the files cqdkit wrote there.
OWNED_LIST = ".cqdkit-files"


#: The environment variable naming cqdkit's cache folder.
CACHE_ENV = "CQDKIT_CACHE"


def default_cache_dir() -> Path:
    """Where cqdkit keeps what it generates or converts once: ``$CQDKIT_CACHE``, or ``~/.cache/cqdkit``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cqdkit"


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Have ``write(temporary_path)`` fill a temporary file next to ``path``, then rename it to ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask), not the
    owner-only mode of temporary files. On any error the temporary file is removed and ``path`` is untouched.
    """
    atomic_writes([path], lambda temporaries: write(temporaries[0]))


def atomic_writes(paths: Sequence[Path], write: Callable[[list[str]], object]) -> None:
    """:func:`atomic_write` for several files filled together (one pass over the data writes them all): each
    is renamed into place once ``write`` has returned; on any error every temporary file is removed.

    Each temporary file is locked (``flock``) while it lives, so a temporary whose lock is free was left by a
    killed writer: writing the same file again removes it (:func:`remove_stale_temporaries`).
    """
    paths = [Path(path) for path in paths]
    for path in paths:
        check_ours(path)
    temporaries: list[str] = []
    locks: list[int] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path.parent, of=path.name)
            descriptor, temporary = _locked_temporary(path)
            locks.append(descriptor)
            temporaries.append(temporary)
        write(temporaries)
        for path, temporary in zip(paths, temporaries):
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
            claim([path])
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        raise
    finally:
        for descriptor in locks:
            os.close(descriptor)


def atomic_link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links are not possible), replacing it atomically;
    like :func:`atomic_write`, never over a file cqdkit did not write."""
    import shutil

    target = Path(target)
    check_ours(target)
    remove_stale_temporaries(target.parent, of=target.name)
    descriptor, temporary = _locked_temporary(target)
    try:
        os.unlink(temporary)
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copy2(source, temporary)
        claim([target])
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
        os.close(descriptor)


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` and an open descriptor holding its ``flock`` (the lock stays with
    the file even when it is replaced by a link or renamed: it marks the file as being written)."""
    import fcntl

    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor, temporary


def owned_names(folder: Path) -> set[str]:
    """The names of the files cqdkit wrote in ``folder`` (from its :data:`OWNED_LIST`)."""
    try:  # without waiting on a FIFO or following a link planted in its place
        descriptor = os.open(Path(folder) / OWNED_LIST, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return set()
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return set()
        lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
    return {line for line in lines if line}


def is_ours(path: Path) -> bool:
    """Whether ``path`` is free for cqdkit to write or delete: it does not exist, or it is a file (not a
    link) that cqdkit wrote (listed in its folder's :data:`OWNED_LIST`)."""
    path = Path(path)
    if path.is_symlink():
        return False  # cqdkit makes no links: one is always someone else's
    if not path.exists():
        return True
    return path.is_file() and path.name in owned_names(path.parent)


def check_ours(path: Path) -> None:
    """Stop before replacing or deleting a file cqdkit did not write.

    Raises:
        CqdkitError: naming ``path`` and the way out.
    """
    path = Path(path)
    if not is_ours(path):
        kind = "a symbolic link" if path.is_symlink() else "a folder" if path.is_dir() else "a file"
        raise CqdkitError(f"{path} is {kind} that cqdkit did not write; cqdkit does not replace or delete it "
                          "(nor write through a link): move it away or choose another --out")


def claim(paths: Sequence[Path]) -> None:
    """Record ``paths`` as cqdkit's own, so that later writes may replace them (an option like ``--force``
    hands a user's file over on purpose; :func:`atomic_writes` claims what it writes).

    The list is only appended to, one short ``write`` per name, so processes writing into one folder at once
    do not lose each other's names."""
    by_folder: dict[Path, list[str]] = {}
    for path in paths:
        by_folder.setdefault(Path(path).parent, []).append(Path(path).name)
    for folder, names in by_folder.items():
        missing = sorted(set(names) - owned_names(folder))
        if not missing:
            continue
        listing = folder / OWNED_LIST
        if listing.is_symlink() or (listing.exists() and not listing.is_file()):
            raise CqdkitError(f"{listing} is not a regular file; cqdkit keeps the list of the files it wrote "
                              "there: remove it")
        descriptor = os.open(listing, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            os.write(descriptor, "".join(f"{name}\n" for name in missing).encode("utf-8", "surrogateescape"))
        finally:
            os.close(descriptor)


def remove_ours(path: Path) -> None:
    """Delete ``path`` if it exists and cqdkit wrote it; a file cqdkit did not write is left alone."""
    path = Path(path)
    if path.exists() and not path.is_symlink() and is_ours(path):
        path.unlink(missing_ok=True)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` (``.<name>.<random>.cqdkit-tmp``); a
    user's own ``.notes.tmp`` is not."""
    return path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX) and path.is_file()


def remove_stale_temporaries(folder: Path, *, of: str | None = None) -> list[Path]:
    """Delete the temporary files that killed writers left anywhere under ``folder`` (only those of the file
    named ``of``, directly in ``folder``, when it is given); returns them. A temporary that a live writer
    is filling holds its lock and is left alone."""
    import fcntl

    pattern = f".{glob.escape(of)}.*{TEMPORARY_SUFFIX}" if of is not None else f".*{TEMPORARY_SUFFIX}"
    found = Path(folder).glob(pattern) if of is not None else Path(folder).rglob(pattern)
    removed = []
    for path in found:
        if not is_temporary(path):
            continue
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone already, or not ours to open
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its writer is alive
        else:
            path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(descriptor)
    return removed


def refuse_to_overwrite(paths: Sequence[Path], *, ours: bool, force: bool, what: str) -> None:
    """Stop before writing over any existing file of ``paths`` unless ``ours`` (they are what an earlier run of
    the same command wrote) or ``force``; ``what`` says what they would have to be, e.g. "a cqdkit export".

    With ``ours`` or ``force`` the existing files are handed to cqdkit (:func:`claim`); ``force`` replaces a
    symbolic link itself, never the file it points to.

    Raises:
        CqdkitError: naming the first such file and the ways out (another ``--out``, ``--force``).
    """
    existing = [Path(path) for path in paths if Path(path).exists() or Path(path).is_symlink()]
    if not (ours or force):
        for path in existing:
            raise CqdkitError(f"{path} exists and is not {what}; refusing to overwrite it: choose another --out, "
                              "or pass --force to replace it")
    for path in existing:
        if path.is_symlink() and force:
            path.unlink()
    claim([path for path in existing if not path.is_symlink()])


def open_regular(path: str | os.PathLike[str], what: str = "a file", mode: str = "rb", **options: Any) -> IO[Any]:
    """Open ``path`` for reading, refusing at once anything that is not a regular file.

    Opening a named pipe (FIFO) waits for a writer, and a device like ``/dev/zero`` never ends: both
    would hang a reader. ``path`` (links followed) is checked before it is opened, and the opened file
    again (it is opened without waiting, so the check cannot be raced into a hang). ``options`` go to
    :func:`open` (``encoding``, ``errors``, ``newline`` for text ``mode``).

    Example:
        >>> open_regular("/dev/zero", "an image file")  # doctest: +SKIP
        DataError: /dev/zero: not a regular file: expected an image file, found a character device

    Raises:
        DataError: ``path`` does not exist, is not a regular file, or cannot be opened.
    """
    path = Path(path)
    try:
        _check_regular(path, os.stat(path).st_mode, what)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: {_bare(what)} not found (it does not exist)") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open {what} ({error.strerror or error})") from None
    try:
        _check_regular(path, os.fstat(descriptor).st_mode, what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, mode, **options)
    except BaseException:
        os.close(descriptor)
        raise


def open_log(path: str | os.PathLike[str]) -> IO[str]:
    """Open the log file ``path`` for appending (created if needed; :data:`os.devnull` as itself), never a
    file cqdkit did not write nor through a link (:func:`check_ours`)."""
    if os.fspath(path) == os.devnull:
        return open(os.devnull, "a", encoding="utf-8")
    path = Path(path)
    check_ours(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim([path])
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def read_regular_text(path: str | os.PathLike[str], what: str = "a file") -> str:
    """The UTF-8 text of ``path`` (a byte-order mark dropped), refusing at once anything but a regular file
    (:func:`open_regular`)."""
    with open_regular(path, what, "r", encoding="utf-8-sig") as handle:
        return handle.read()


def regular_file_problem(path: str | os.PathLike[str], what: str = "a file") -> str | None:
    """Why ``path`` (links followed) cannot be read as ``what`` -- missing, or not a regular file -- or None."""
    try:
        _check_regular(Path(path), os.stat(path).st_mode, what)
    except FileNotFoundError:
        return f"{path}: {_bare(what)} not found (it does not exist)"
    except OSError as error:
        return f"{path}: cannot open {what} ({error.strerror or error})"
    except DataError as error:
        return str(error)
    return None


def _bare(what: str) -> str:
    """``"an image file"`` -> ``"image file"``."""
    return what.split(" ", 1)[1] if what.split(" ", 1)[0] in ("a", "an") else what


def _check_regular(path: Path, mode: int, what: str) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    raise DataError(f"{path}: not a regular file: expected {what}, found {kind}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def atomic_save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` through a temporary file and an atomic rename.

    Tensors are copied to contiguous CPU memory first (safetensors refuses shared or strided storage).
    """
    from safetensors.torch import save_file

    from safetensors import SafetensorError

    contiguous = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    try:
        atomic_write(path, lambda temporary: save_file(contiguous, temporary, metadata=metadata))
    except SafetensorError as error:  # safetensors reports a full disk or an I/O error in its own type
        raise OSError(f"cannot write {path}: {error}") from error


def atomic_save_figure(figure: Any, path: Path, **options: Any) -> None:
    """``figure.savefig`` (a matplotlib figure; the format from ``path``'s suffix) through :func:`atomic_write`."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **options)
    atomic_write_bytes(Path(path), buffer.getvalue())


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:  # never waits on a FIFO or reads a device forever
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
