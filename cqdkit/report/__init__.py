"""Reports people look at: one HTML page with PNG figures for a ``cqdkit run`` or ``cqdkit table`` folder.

    from cqdkit.report import write_report

    index = write_report("runs/tps")            # runs/tps/report/index.html (+ curves.png, ...)
    index = write_report("runs/table", out="table-report")

Modules: :mod:`.folder` reads what a run or table wrote, :mod:`.predictions` runs the saved models on the
test split, :mod:`.figures` draws, :mod:`.html` makes safe markup, :mod:`.pages` says what the pages show,
:mod:`.write` puts it together. Importing this package is cheap: matplotlib and torch load on first use.
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "write_report": "cqdkit.report.write",
    "read_folder": "cqdkit.report.folder",
    "RunFolder": "cqdkit.report.folder",
    "TableFolder": "cqdkit.report.folder",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
