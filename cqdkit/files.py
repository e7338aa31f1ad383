"""Atomic file writes: readers see the old file or the new one, never a torn one.

Every file cqdkit writes (checkpoints, weights, caches, JSON, reports) goes through :func:`atomic_write`
or one of the helpers built on it::

    >>> from pathlib import Path
    >>> atomic_write_json(Path("/tmp/cqdkit-doctest.json"), {"done": True})
    >>> Path("/tmp/cqdkit-doctest.json").read_text()
    '{\\n  "done": true\\n}\\n'
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CqdkitError

if TYPE_CHECKING:
    import torch

#: The suffix of :func:`atomic_write`'s temporary files (see :func:`remove_stale_temporaries`).
TEMPORARY_SUFFIX = ".cqdkit-tmp"


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
    is renamed into place once ``write`` has returned; on any error every temporary file is removed."""
    paths = [Path(path) for path in paths]
    temporaries: list[str] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
            os.close(handle)
            temporaries.append(temporary)
        write(temporaries)
        for path, temporary in zip(paths, temporaries):
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        raise


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` (``.<name>.<random>.cqdkit-tmp``); a
    user's own ``.notes.tmp`` is not."""
    return path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX) and path.is_file()


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that killed writers left anywhere under ``folder``; returns them.

    Only safe while no one writes there: call it holding the folder's lock (:mod:`cqdkit.lock`).
    """
    removed = [path for path in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}") if is_temporary(path)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def refuse_to_overwrite(paths: Sequence[Path], *, ours: bool, force: bool, what: str) -> None:
    """Stop before writing over any existing file of ``paths`` unless ``ours`` (they are what an earlier run of
    the same command wrote) or ``force``; ``what`` says what they would have to be, e.g. "a cqdkit export".

    Raises:
        CqdkitError: naming the first such file and the ways out (another ``--out``, ``--force``).
    """
    if ours or force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise CqdkitError(f"{path} exists and is not {what}; refusing to overwrite it: choose another --out, "
                              "or pass --force to replace it")


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


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
