"""Explaining a run (paper section 3): B against the distilled student, on the run's test z views.

* saliency: per-pixel norm of d log p(true class | z) / dz for a few examples;
* tau: the share of that gradient inside the object box, for up to ``images`` test images (needs z with
  background around a known box, as ``localization`` makes; skipped with a note otherwise);
* the five class pairs whose pairwise confusion drops most from B to the student, on the whole test set.

Models missing from the run (``cqdkit run`` trains A and one student, and B unless asked not to) are
trained on demand into the run directory, with the run's settings.

Example::

    result = explain_run(Path("runs/localization"), images=1000)
    result["summary"]["tau"]["mean"]   # {"B": ..., "A+CQD": ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..lock import folder_lock
from ..reporting import Reporter
from ..train.methods import get_method
from .confusion import confusion_matrix, top_reductions
from .report import Explanation, check_report_files, write_report
from .saliency import saliency
from .tau import box_fraction

if TYPE_CHECKING:
    from ..train.experiment import Experiment

#: How many class pairs the confusion analysis shows (the paper's Figure 7).
TOP_PAIRS = 5


def explain_run(
    run_dir: Path,
    *,
    images: int = 1000,
    examples: int = 6,
    out: Path | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Explain the run in ``run_dir``; returns ``{"summary": report.json's content, "files": {name: path}}``.

    B and the distilled student (the run's own, or the one ``--method auto`` gives) are loaded from the run,
    or trained into it with the run's settings when missing.
    """
    reporter = reporter or Reporter.silent()
    run_dir = Path(run_dir)
    check_report_files(Path(out) if out else run_dir / "explain")  # before any training: a user's file stops it
    check_run_files(run_dir)
    with folder_lock(run_dir, what="run folder"):  # models missing from the run are trained into it
        return _explain(run_dir, images=images, examples=examples, out=out, reporter=reporter)


def _explain(run_dir: Path, *, images: int, examples: int, out: Path | None, reporter: Reporter) -> dict[str, Any]:
    from ..schema import read_model_description
    from ..train.config import RunConfig
    from ..train.evaluate import predict
    from ..train.experiment import Experiment

    config = RunConfig.load(run_dir / "config.json")
    experiment = Experiment(config, run_dir, resume=True, reporter=reporter)
    config = experiment.config
    methods = (get_method("b"), experiment.distilled_method())
    for method in methods:  # a saved model is read back as its model.json says
        if (run_dir / method.name / "model.json").is_file():
            read_model_description(run_dir / method.name / "model.json")
    trained = []
    for method in methods:
        if (run_dir / method.name / "model.safetensors").exists():
            reporter.message(f"{method.title} ({method.name}): loading the trained model from {run_dir / method.name}")
        else:
            reporter.message(f"{method.title} ({method.name}): not in the run; training it now into "
                             f"{run_dir / method.name} ({config.epochs} epochs, the run's settings)")
        trained.append(experiment.train_or_load(method.name))

    hardware = experiment.hardware
    test = experiment.test_set
    predictions, accuracy = [], []
    for model in trained:
        logits, labels = predict(model.model, model.normalizer, test, "z", hardware,
                                 batch_size=max(config.batch_size, 64), name=f"{model.method.title} on test z",
                                 reporter=reporter)
        predictions.append(logits.argmax(1).numpy())
        accuracy.append(float((predictions[-1] == labels.numpy()).mean()))
    labels_np = labels.numpy()
    classes = experiment.data.classes
    pairs = top_reductions(*(confusion_matrix(labels_np, p, len(classes)) for p in predictions), k=TOP_PAIRS)

    chosen = _choose(len(test), images, config.seed)
    show = np.unique(np.linspace(0, len(chosen) - 1, min(examples, len(chosen))).round().astype(int))
    analysed = _analyse(experiment, trained, chosen, show, reporter)
    tau, tau_energy, note = _tau_or_note(analysed, config.degrade)
    box_area = analysed["box_area"] if tau is not None else None
    if note:
        reporter.message(note if tau is not None else f"tau skipped: {note}")

    explanation = Explanation(
        run=str(run_dir),
        names=(trained[0].method.title, trained[1].method.title),
        methods=tuple(method.name for method in methods),
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
    target = Path(out) if out else run_dir / "explain"
    if run_dir.resolve() in target.resolve().parents:  # inside the run folder, whose lock is held
        files = write_report(target, explanation)
    else:
        with folder_lock(target, what="explain folder"):
            files = write_report(target, explanation)
    return {"summary": explanation.summary(), "files": files}


def check_run_files(run_dir: Path) -> None:
    """The run's ``config.json`` (when there is one) is what cqdkit writes (:func:`cqdkit.train.written.check_config`).

    Raises:
        DataError: naming the file, the field, the value and what was expected.
    """
    from ..schema import read_json
    from ..train.written import check_config

    if (run_dir / "config.json").is_file():
        check_config(run_dir / "config.json", read_json(run_dir / "config.json"))


def _choose(total: int, wanted: int, seed: int) -> np.ndarray:
    """``min(wanted, total)`` test indices, a seeded random subset in increasing order."""
    if wanted >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, wanted, replace=False))


def _analyse(experiment: Experiment, trained: list, chosen: np.ndarray, show: np.ndarray,
             reporter: Reporter) -> dict[str, Any]:
    """Saliency of both models on the chosen test z views: tau inputs for all, maps for ``show``.

    Returns the z boxes as ``(x0, y0, x1, y1)``, both models' tau and energy fractions per image, the
    boxes' area fractions, and the images, labels and maps of the examples.
    """
    import numpy as np
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(experiment.test_set, chosen.tolist()), batch_size=32, shuffle=False,
                        num_workers=experiment.hardware.workers)
    boxes, labels, areas, fractions, energies = [], [], [], [[], []], [[], []]
    examples: list[tuple[np.ndarray, list[np.ndarray]]] = []
    wanted, seen = set(show.tolist()), 0
    with reporter.progress("saliency", len(loader)) as advance:
        for batch in loader:
            z, label = batch.z, batch.label
            corners = batch.box.numpy().astype(np.float64)
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


def _pair_examples(test: Any, labels: np.ndarray, b_predictions: np.ndarray, i: int, j: int) -> list:
    """``[(x, z) of class i, (x, z) of class j]``: preferably images that B took for the other class."""
    views = []
    for own, other in ((i, j), (j, i)):
        confused = np.flatnonzero((labels == own) & (b_predictions == other))
        index = int(confused[0]) if confused.size else int(np.flatnonzero(labels == own)[0])
        sample = test[index]
        views.append((sample.x[:3].permute(1, 2, 0).numpy(), sample.z.permute(1, 2, 0).numpy()))  # x's RGB only
    return views
