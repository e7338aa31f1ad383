"""The paper's MatConvNet networks, downloaded into cqdkit's weight store the first time ``--pretrained`` needs them.

:func:`download_matconvnet` fetches ``imagenet-vgg-m.mat`` (for ``vggm``) or ``imagenet-vgg-verydeep-16.mat``
(for ``vgg16``) from MatConvNet's published models (``$CQDKIT_MATCONVNET_URL``, default
https://www.vlfeat.org/matconvnet/models/), converts it with :func:`cqdkit.models.matconvnet.convert_file`
(which checks every layer) and deletes it; the converted weights' JSON sidecar records the URL and the
downloaded file's SHA-256.

The transfer goes to ``<file>.part`` in the weight store and resumes it with an HTTP Range request (after an
interruption, in the same call or a later one); a server that ignores Range sends the whole file again. The
file must be as long as the server's Content-Length said. Only the standard library speaks HTTP.

Example::

    download_matconvnet("vggm", store_path("vggm"))  # {"source": "https://...", "sha256": "...", ...}
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CqdkitError, DataError

#: The environment variable that replaces MatConvNet's models location (a mirror, or a test's local server).
URL_ENV = "CQDKIT_MATCONVNET_URL"
DEFAULT_URL = "https://www.vlfeat.org/matconvnet/models/"
#: The MatConvNet file of each backbone it converts to.
FILES = {"vggm": "imagenet-vgg-m.mat", "vgg16": "imagenet-vgg-verydeep-16.mat"}
#: Seconds to wait for the server to connect or send more.
TIMEOUT_S = 30.0
#: Requests per download: the first, then resumptions while the connection keeps breaking off.
ATTEMPTS = 3
_BLOCK = 1 << 20

log = logging.getLogger("cqdkit")


class Offline(CqdkitError):
    """The server could not be reached: no network, a DNS failure, a refused connection or a timeout."""


def matconvnet_url(filename: str) -> str:
    """Where MatConvNet's ``filename`` is published (``$CQDKIT_MATCONVNET_URL`` replaces the location)."""
    base = os.environ.get(URL_ENV, "").strip() or DEFAULT_URL
    return f"{base.rstrip('/')}/{filename}"


def download_matconvnet(arch: str, out: Path) -> dict[str, Any]:
    """Download ``arch``'s MatConvNet file next to ``out``, convert it into ``out`` (and its JSON sidecar) and
    delete it; returns the sidecar's description (``source`` is the URL, ``sha256`` the downloaded file's).

    Raises:
        Offline: the server cannot be reached (a partial download is kept, to be resumed).
        CqdkitError: the server answered with an error, or the download kept breaking off.
        DataError: what arrived is not the MatConvNet network ``arch`` needs (it is deleted).
    """
    from .matconvnet import convert_file

    url = matconvnet_url(FILES[arch])
    mat = out.parent / FILES[arch]
    fetch(url, mat)
    try:
        description = convert_file(mat, arch, out, origin=url)
    except CqdkitError as error:
        raise DataError(f"downloaded {url}, but it is not the MatConvNet {arch} network: {error}") from None
    finally:
        mat.unlink(missing_ok=True)
    log.info("downloaded %s (sha256 %s) and converted it for %s into %s", url, description["sha256"], arch, out)
    return description


def fetch(url: str, target: Path, *, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` through ``target.part`` (resumed if it exists), with a progress bar on a
    terminal; ``target`` appears only once complete.

    Raises:
        Offline: the server cannot be reached.
        CqdkitError: the server answered with an error, or ``ATTEMPTS`` requests left the file incomplete.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    part = target.with_name(target.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    columns = (TextColumn(target.name), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("download", total=None)
        for _ in range(ATTEMPTS):
            received, total = _request(url, part, timeout, lambda done, size: progress.update(
                task, completed=done, total=size))
            if total is None or received == total:
                part.replace(target)
                return target
    raise CqdkitError(f"downloading {url}: the connection broke off {ATTEMPTS} times, at {received} of {total} "
                      f"bytes; run again to resume {part}")


def _request(url: str, part: Path, timeout: float,
             show: Callable[[int, int | None], None]) -> tuple[int, int | None]:
    """One request for the rest of ``url`` after the bytes already in ``part``, appended to it; returns the
    bytes ``part`` holds and the file's size (None when the server does not say)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the .part is not a prefix of this file: start again
            part.unlink()
            return _request(url, part, timeout, show)
        raise CqdkitError(f"downloading {url}: the server answered {error.code} {error.reason}; expected the "
                          "file") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise Offline(f"cannot reach {url} ({reason})") from None
    with response:
        start = 0
        if response.status == 206:
            found = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
            if not found or int(found.group(1)) != offset:  # another range than asked for: start again
                response.close()
                part.unlink(missing_ok=True)
                return _request(url, part, timeout, show)
            start = offset
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        received = start
        show(received, total)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if start else os.O_TRUNC)
        with os.fdopen(os.open(part, flags, 0o666), "ab" if start else "wb") as handle:  # never through a link
            try:
                while block := response.read(_BLOCK):
                    handle.write(block)
                    received += len(block)
                    show(received, total)
            except (OSError, http.client.HTTPException):  # broken off: what arrived is kept, to resume
                pass
    return received, total
