"""Tasks for tests/test_sweep.py: trainings that die, fail or count, importable by a worker process."""

import os
from pathlib import Path

from cqdkit.errors import CqdkitError


def dies_once(marker: str, reporter) -> dict:
    """Kills its own process the first time (as the OOM killer would), succeeds the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(9)
    return {"val_z": 0.5}


def always_dies(marker: str, reporter) -> dict:
    with open(marker, "a") as handle:
        handle.write("x")
    os._exit(9)


def raises(marker: str, reporter) -> dict:
    with open(marker, "a") as handle:
        handle.write("x")
    raise CqdkitError("bad setting: --lambda -1")


def counted(marker: str, value: float, reporter, after_file: str | None = None) -> dict:
    """Appends a line to ``marker`` each time it runs; fails when ``after_file`` (written by the training it waits
    for) is missing, so an order violation shows."""
    if after_file is not None and not Path(after_file).exists():
        raise CqdkitError(f"{after_file} is missing: ran before the training it waits for")
    with open(marker, "a") as handle:
        handle.write(f"{value}\n")
    Path(marker + ".done").write_text("done")
    return {"val_z": value}
