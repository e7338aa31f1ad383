"""``python -m cqdkit.sweep.worker SPEC``: run one training of a sweep in this process (see
:func:`cqdkit.sweep.workers.work`)."""

import sys
from pathlib import Path

from .workers import work

if __name__ == "__main__":
    sys.exit(work(Path(sys.argv[1])))
