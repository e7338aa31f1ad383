"""``python -m cqdkit.sweep.worker``: a worker process of a sweep; it runs the trainings whose spec files it is
given on stdin, one after another (see :func:`cqdkit.sweep.workers.serve`)."""

import sys

from .workers import serve

if __name__ == "__main__":
    sys.exit(serve())
