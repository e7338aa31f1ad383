"""Atomic file writes: readers see the old file or the new one, never a torn one.

    >>> from pathlib import Path
    >>> atomic_write(Path("/tmp/cqdkit-doctest.txt"), lambda tmp: Path(tmp).write_text("done"))
    >>> Path("/tmp/cqdkit-doctest.txt").read_text()
    'done'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Have ``write(temporary_path)`` fill a temporary file next to ``path``, then rename it to ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask), not the
    owner-only mode of temporary files. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
