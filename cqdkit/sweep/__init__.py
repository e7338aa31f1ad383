"""Sweeps: many independent trainings (a table's, a tune grid's), run in parallel and resumed where they stopped.

* :class:`Training`: one training, named, importable, with what it waits for (:mod:`.training`);
* :func:`run_sweep`: runs them here, in ``--jobs`` worker processes or on Ray, recording each (:mod:`.run`).
"""

from .run import ENGINES, SweepSettings, default_threads, run_sweep
from .training import Training

__all__ = ["ENGINES", "SweepSettings", "Training", "default_threads", "run_sweep"]
