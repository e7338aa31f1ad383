"""``write_report``: the report of a run or table folder, as one HTML page and the PNGs next to it.

For a ``cqdkit run`` folder, ``RUN_DIR/report/`` (or ``out``) gets::

    index.html        the page: results, learning curves, examples, per-class accuracy, settings
    curves.png        loss, cross-entropy, distillation term and training accuracy per epoch, every model
    per-class.png     test accuracy per class on z, B against the student
    examples/         x-NN.png and z-NN.png of a few test images

For a ``cqdkit table`` folder: ``index.html`` and ``table.png`` (Table 1 as bars with error bars over
seeds). The page links to its images by relative paths, so the folder can be moved or served as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from ..errors import CqdkitError
from ..files import atomic_write_text, check_ours
from ..images import write_png
from ..reporting import Reporter
from .folder import RunFolder, TableFolder, read_folder

#: Test images shown in a run report.
DEFAULT_EXAMPLES = 12


def write_report(run_dir: str | Path, out: str | Path | None = None, *, examples: int = DEFAULT_EXAMPLES,
                 reporter: Reporter | None = None) -> Path:
    """Write the report of the run or table in ``run_dir`` into ``out`` (default ``run_dir/report``).

    Returns the path of ``index.html``. A run report rebuilds the test split and runs the saved models on it
    (a few seconds on the embedded dataset); when the dataset or a plugin the run used is missing here, the
    examples and the per-class accuracy are left out with a note, and the rest is written.

    Nothing is written before every file the report may write has been checked to be free: absent, or written
    by cqdkit (:func:`cqdkit.files.check_ours`); a user's ``index.html`` in ``out`` stops it up front.

    Raises:
        DataError: ``run_dir`` is not a finished run folder or a table folder, or its files cannot be read.
        CqdkitError: ``out`` holds a file of the report's names that cqdkit did not write.
    """
    folder = read_folder(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "report"
    check_outputs(out, planned_files(folder, examples))
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(folder, TableFolder):
        text = _table_report(folder, out)
    else:
        text = _run_report(folder, out, examples, reporter or Reporter.silent())
    index = out / "index.html"
    atomic_write_text(index, text)
    return index


def planned_files(folder: RunFolder | TableFolder, examples: int) -> list[str]:
    """Every file a report of ``folder`` may write, relative to its folder (the examples and per-class figure
    only when the test split can be rebuilt, which is known later: they are checked all the same)."""
    if isinstance(folder, TableFolder):
        return ["index.html", "table.png"]
    names = ["index.html", "curves.png", "per-class.png"]
    return names + [f"examples/{view}-{number:02d}.png" for number in range(examples) for view in ("x", "z")]


def check_outputs(out: Path, names: list[str]) -> None:
    """Stop before writing anything when ``out`` (or a file of ``names`` in it) is not cqdkit's to write.

    Raises:
        CqdkitError: naming the first such path.
    """
    for folder in sorted({out} | {(out / name).parent for name in names}):
        if folder.exists() and not folder.is_dir():
            raise CqdkitError(f"{folder} is a file that cqdkit did not write; expected a folder to write the report "
                              "into: move it away or choose another --out")
    for name in names:
        check_ours(out / name)


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to the page's folder, as a URL (forward slashes, odd characters %-encoded)."""
    return quote(Path(os.path.relpath(path.resolve(), out.resolve())).as_posix())


def _run_report(folder: RunFolder, out: Path, examples: int, reporter: Reporter) -> str:
    from .figures import curves_figure, per_class_figure, save_png
    from .pages import run_page, title_of
    from .predictions import predict_test_split

    titles = {name: title_of(name) for name in folder.models}
    curves = None
    if folder.logs:
        save_png(curves_figure({m: folder.logs[m] for m in folder.models if m in folder.logs}, titles),
                 out / "curves.png")
        curves = "curves.png"
    predictions, skipped, per_class, example_files = None, None, None, []
    try:
        predictions = predict_test_split(folder, examples=examples, reporter=reporter)
    except CqdkitError as error:  # the dataset or a plugin is not available here: report the rest
        skipped = f"the test split could not be rebuilt here ({error})"
    if predictions is not None:
        if predictions.predicted:
            accuracies = {m: predictions.per_class(m) for m in predictions.predicted}
            save_png(per_class_figure(predictions.classes, accuracies, titles), out / "per-class.png")
            per_class = "per-class.png"
        if predictions.examples:
            (out / "examples").mkdir(exist_ok=True)
        for number, example in enumerate(predictions.examples):
            names = (f"examples/x-{number:02d}.png", f"examples/z-{number:02d}.png")
            for name, image in zip(names, (example.x, example.z)):
                write_png(out / name, image)  # exactly the view's pixels
            example_files.append(names)
    files = [(name, _relative(folder.path / name, out)) for name in ("results.json", "config.json")]
    return run_page(folder, curves=curves, per_class=per_class, predictions=predictions,
                    example_files=example_files, skipped=skipped, files=files)


def _table_report(folder: TableFolder, out: Path) -> str:
    from .figures import save_png, table_figure
    from .pages import table_page

    save_png(table_figure(folder.table), out / "table.png")
    files = [(name, _relative(folder.path / name, out)) for name in ("table.md", "table.csv", "table.json")
             if (folder.path / name).exists()]
    return table_page(folder, image="table.png", files=files)
