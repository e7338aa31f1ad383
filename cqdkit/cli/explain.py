"""``cqdkit explain RUN_DIR``: why CQD works on a run (paper section 3), as figures and a report.

Compares B (trained on z alone) with the distilled student (A+CQD, or CQD when the teacher and student
architectures differ) on the run's test z views:

* saliency: per-pixel norm of d log p(true class | z) / dz for a few examples (``--examples``);
* tau: the share of that gradient inside the object box, for ``--images`` test images (needs a z with
  background around a known box: ``--degrade localization``; skipped with a message otherwise);
* the five class pairs whose pairwise confusion drops most from B to the student, on the whole test set.

Models missing from the run (``cqdkit run`` trains A and one student) are trained on demand into the run
directory, with the run's settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .console import console, err_console

if TYPE_CHECKING:
    import numpy as np

    from ..train.experiment import Experiment

#: How many class pairs the confusion analysis shows (the paper's Figure 7).
TOP_PAIRS = 5


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Test images for tau (capped at the test set).")
@click.option("--examples", type=click.IntRange(min=1), default=6, show_default=True,
              help="Example images in the saliency figure.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [RUN_DIR/explain].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def explain(run_dir: Path, images: int, examples: int, out: Path | None, quiet: bool) -> None:
    """Saliency, tau and top confusion reductions of B vs the CQD student of RUN_DIR."""
    began = time.perf_counter()
    result = explain_run(run_dir, images=images, examples=examples, out=out, progress=not quiet,
                         say=lambda text: err_console.print(text, markup=False, highlight=False))
    print_summary(result["summary"], result["files"], time.perf_counter() - began)


def explain_run(
    run_dir: Path,
    *,
    images: int = 1000,
    examples: int = 6,
    out: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Explain the run in ``run_dir``; returns ``{"summary": report.json's content, "files": {name: path}}``."""
    import numpy as np

    from ..explain.confusion import confusion_matrix, top_reductions
    from ..explain.report import Explanation, write_report
    from ..train.config import RunConfig
    from ..train.engine import predict
    from ..train.experiment import Experiment
    from ..train.methods import METHODS

    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / "config.json")
    experiment = Experiment(config, run_dir, resume=True, progress=progress)
    config = experiment.config
    student = config.method if config.method in ("cqd", "a-cqd") else (
        "a-cqd" if config.teacher == config.student and not experiment.privileged else "cqd")
    methods = ("b", student)
    trained = []
    for method in methods:
        title = METHODS[method].title
        if (run_dir / method / "model.safetensors").exists():
            say(f"{title} ({method}): loading the trained model from {run_dir / method}")
        else:
            say(f"{title} ({method}): not in the run; training it now into {run_dir / method} "
                f"({config.epochs} epochs, the run's settings)")
        trained.append(experiment.model(method))

    hardware = experiment.hardware
    test = experiment.test_set
    predictions, accuracy = [], []
    for model in trained:
        logits, labels = predict(model.model, model.normalizer, test, "z", hardware,
                                 batch_size=max(config.batch_size, 64), name=f"{model.method.title} on test z")
        predictions.append(logits.argmax(1).numpy())
        accuracy.append(float((predictions[-1] == labels.numpy()).mean()))
    labels_np = labels.numpy()
    classes = experiment.data.classes
    pairs = top_reductions(*(confusion_matrix(labels_np, p, len(classes)) for p in predictions), k=TOP_PAIRS)

    chosen = _choose(len(test), images, config.seed)
    show = np.unique(np.linspace(0, len(chosen) - 1, min(examples, len(chosen))).round().astype(int))
    analysed = _analyse(experiment, trained, chosen, show, progress)
    tau, tau_energy, note = _tau_or_note(analysed, config.degrade)
    box_area = analysed["box_area"] if tau is not None else None
    if note:
        say(note if tau is not None else f"tau skipped: {note}")

    explanation = Explanation(
        run=str(run_dir),
        names=(trained[0].method.title, trained[1].method.title),
        methods=methods,
        classes=list(classes),
        accuracy=(accuracy[0], accuracy[1]),
        images=analysed["images"],
        labels=analysed["labels"],
        boxes=analysed["boxes"][show],
        maps=analysed["maps"],
        tau=tau,
        tau_energy=tau_energy,
        box_area=box_area,
        tau_ids=[test.records[int(k)].id for k in chosen],
        tau_note=note,
        pairs=pairs,
        pair_examples=[_pair_examples(test, labels_np, predictions[0], p.i, p.j) for p in pairs],
        test_images=len(test),
    )
    files = write_report(Path(out) if out else run_dir / "explain", explanation)
    return {"summary": explanation.summary(), "files": files}


def _choose(total: int, wanted: int, seed: int) -> "np.ndarray":
    """``min(wanted, total)`` test indices, a seeded random subset in increasing order."""
    import numpy as np

    if wanted >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, wanted, replace=False))


def _analyse(experiment: "Experiment", trained: list, chosen: "np.ndarray", show: "np.ndarray",
             progress: bool) -> dict[str, Any]:
    """Saliency of both models on the chosen test z views: tau inputs for all, maps for ``show``.

    Returns the z boxes as ``(x0, y0, x1, y1)``, both models' tau and energy fractions per image, the
    boxes' area fractions, and the images, labels and maps of the examples.
    """
    import numpy as np
    from torch.utils.data import DataLoader, Subset

    from ..explain.saliency import saliency
    from ..explain.tau import box_fraction
    from ..train.engine import progress_bar

    loader = DataLoader(Subset(experiment.test_set, chosen.tolist()), batch_size=32, shuffle=False,
                        num_workers=experiment.hardware.workers)
    boxes, labels, areas, fractions, energies = [], [], [], [[], []], [[], []]
    examples: list[tuple[np.ndarray, list[np.ndarray]]] = []
    wanted, seen = set(show.tolist()), 0
    with progress_bar("saliency", len(loader), progress) as advance:
        for _x, z, label, _index, box in loader:
            corners = box.numpy().astype(np.float64)
            corners[:, 2:] += corners[:, :2]  # (x, y, width, height) -> (x0, y0, x1, y1)
            maps = [saliency(model.model, model.normalizer, z, label).numpy() for model in trained]
            for k, model_maps in enumerate(maps):
                fractions[k].append(box_fraction(model_maps, corners))
                energies[k].append(box_fraction(model_maps.astype(np.float64) ** 2, corners))
            for row in range(len(z)):
                if seen + row in wanted:
                    examples.append((z[row].permute(1, 2, 0).numpy(), [m[row] for m in maps]))
            boxes.append(corners)
            areas.append(box_fraction(np.ones(maps[0].shape), corners))
            labels.append(label.numpy())
            seen += len(z)
            advance(1)
    all_labels = np.concatenate(labels)
    return {
        "boxes": np.concatenate(boxes),
        "size": tuple(z.shape[-2:]),
        "tau": tuple(np.concatenate(f) for f in fractions),
        "energy": tuple(np.concatenate(e) for e in energies),
        "box_area": np.concatenate(areas),
        "images": np.stack([image for image, _ in examples]),
        "labels": all_labels[show],
        "maps": tuple(np.stack([maps[k] for _, maps in examples]) for k in range(2)),
    }


def _tau_or_note(analysed: dict[str, Any], degrade: str) -> tuple[Any, Any, str | None]:
    """tau and tau_energy of both models, with a remark; or ``(None, None, why not)`` when meaningless."""
    import numpy as np

    boxes = analysed["boxes"]
    height, width = analysed["size"]
    known = ~np.isnan(boxes).any(axis=1)
    if not known.any():
        return None, None, ("the test z views carry no object box (a dataset without boxes, or --augment "
                            "moving the box); tau needs the box in z's frame")
    whole = (boxes[known, 0] <= 0) & (boxes[known, 1] <= 0) & (boxes[known, 2] >= width) & (boxes[known, 3] >= height)
    if whole.all():
        return None, None, (f"z is made from the object crop (--degrade {degrade}), so the box is the whole "
                            "image and tau would be 1 for any model; tau needs z with background around the "
                            "box, e.g. --degrade localization")
    missing = int((~known).sum())
    note = f"{missing} of {len(boxes)} images have no box and are left out of tau." if missing else None
    return analysed["tau"], analysed["energy"], note


def _pair_examples(test: Any, labels: "np.ndarray", b_predictions: "np.ndarray", i: int, j: int) -> list:
    """``[(x, z) of class i, (x, z) of class j]``: preferably images that B took for the other class."""
    import numpy as np

    views = []
    for own, other in ((i, j), (j, i)):
        confused = np.flatnonzero((labels == own) & (b_predictions == other))
        index = int(confused[0]) if confused.size else int(np.flatnonzero(labels == own)[0])
        x, z = test[index][:2]
        views.append((x[:3].permute(1, 2, 0).numpy(), z.permute(1, 2, 0).numpy()))  # x's RGB only
    return views


def print_summary(summary: dict[str, Any], files: dict[str, Path], seconds: float) -> None:
    """Accuracy and mean tau of both models, the top confusion reductions and where the report is."""
    from rich.table import Table

    names = list(summary["models"])
    table = Table(title="B vs the CQD student on the test z views")
    for column in ("model", "test z accuracy (%)", "mean tau", "mean tau_energy"):
        table.add_column(column, justify="left" if column == "model" else "right")
    tau = summary["tau"]
    for name in names:
        table.add_row(
            name,
            f"{100 * summary['test_z_accuracy'][name]:.1f}",
            f"{tau['mean'][name]:.3f}" if tau else "-",
            f"{tau['energy_mean'][name]:.3f}" if tau else "-",
        )
    console.print(table)
    if tau:
        console.print(f"tau over {tau['images']} images; a uniform gradient would give {tau['uniform_mean']:.3f}")
    first, second = names
    for pair in summary["pairs"]:
        a, b = pair["classes"]
        console.print(f"{a} / {b}: confusion {pair[f'confusion_{first}']:.2f} ({first}) -> "
                      f"{pair[f'confusion_{second}']:.2f} ({second})")
    console.print(f"report: {files['markdown']} and {files['html']}")
    console.print(f"wall time {seconds:.0f} s", style="dim")
