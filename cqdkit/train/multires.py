"""``cqdkit multires``: the paper's Table 3 (section 2.3), for any number of qualities at once.

Qualities are ``clean`` (the high-quality views x) and one per degradation spec (its views z). Models:

* **A**: trained on clean x (shared by every quality, as in ``cqdkit table``);
* **A+CQD [q]**: one expert per degraded quality q (``cqd`` when teacher and student differ);
* **A+B**: one model trained on the union of clean x and every quality's z (from the backbone's initial
  weights, like method b);
* **Multi-res**: the :class:`~cqdkit.routing.QualityRouter`: a linear classifier on log-magnitude
  spectra picks the quality of each image, whose expert answers (A for clean, A+CQD [q] for q);
* **Oracle**: the same experts, each image routed by its true quality.

Every model is tested on each quality's test views and on their mixture (all of them together; the
sets have equal sizes, so the mixture is their mean). Each A+CQD row is its own expert tested everywhere.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.sample import Sample, check_view
from ..errors import CqdkitError
from ..models.preprocessing import Normalizer
from ..lock import folder_lock
from ..models.weights import save_model
from ..reporting import Reporter, reporting_into
from ..sweep import SweepSettings, Training, run_sweep
from ..files import atomic_write_bytes, atomic_write_json
from .config import RunConfig
from .distributed import is_main_process
from .engine import Objective, fit
from .evaluate import predict
from .hardware import Hardware
from .methods import AUTO, METHODS
from .table import slug

CLEAN = "clean"
MIXTURE = "mixture"


class MixedQualities(Dataset):
    """The union of several paired datasets, each seen at one quality.

    Every sample keeps its high-quality view x, and its z is the image at the part's quality: the part's
    own z, or x itself for the clean quality (``view="x"``). A model trained on z of this union (model
    A+B) learns from every quality; ``index`` is the position in the union.
    """

    def __init__(self, parts: Sequence[tuple[Any, str]]) -> None:
        for _, view in parts:
            check_view(view)
        self.parts = list(parts)
        self.starts = [0]
        for dataset, _ in self.parts:
            self.starts.append(self.starts[-1] + len(dataset))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        part = bisect.bisect_right(self.starts, index) - 1
        dataset, view = self.parts[part]
        sample = dataset[index - self.starts[part]]
        return sample._replace(z=sample.view(view), index=index)

    def set_epoch(self, epoch: int) -> None:
        for dataset, _ in self.parts:
            dataset.set_epoch(epoch)


def run_multires(
    base: RunConfig, qualities: list[str], out: Path, *, sweep: SweepSettings = SweepSettings(),
    reporter: Reporter | None = None
) -> dict[str, Any]:
    """Train (or reuse from ``out``) every model of Table 3, fit the router, evaluate, write the files.

    Writes ``out/table3.md``, ``out/table3.json`` and the router as ``out/router.safetensors`` plus
    ``out/router.json``. Returns the content of ``table3.json``. The models train as a sweep
    (:mod:`cqdkit.sweep`: A, then the experts; A+B beside them), in parallel with ``sweep.jobs`` or on Ray.

    Raises:
        CqdkitError: no quality, a repeated one, one named ``clean``, one that adds privileged channels
            to x, or qualities whose clean views differ (then they share no model A).
    """
    _check_qualities(qualities)
    sweep.check()
    out = Path(out)
    with folder_lock(out), reporting_into(reporter, out, tensorboard=base.tensorboard) as reporter:
        return _run_multires(base, qualities, out, sweep, reporter)


def _experiments(base: RunConfig, qualities: list[str], out: Path, reporter: Reporter) -> list[Any]:
    """One experiment per degraded quality, all sharing model A in ``out``."""
    from .experiment import Experiment

    return [Experiment(dataclasses.replace(base, degrade=spec, method=AUTO), out / slug(spec), teacher_root=out,
                       reporter=reporter.scoped(slug(spec)))
            for spec in qualities]


def multires_model(config: dict[str, Any], qualities: list[str], out: str, model: str, reporter: Reporter,
                   quality: int = 0) -> dict[str, Any]:
    """A sweep's training: Table 3's ``model`` (``"a"``, ``"expert"`` of quality number ``quality``, or ``"mixed"``,
    A+B) trained or loaded in ``out``; returns nothing to score (the table tests them together)."""
    experiments = _experiments(RunConfig(**config), qualities, Path(out), reporter)
    if model == "mixed":
        _train_mixed(experiments, Path(out))
    else:
        experiments[quality].train_or_load("a" if model == "a" else experiments[quality].method.name)
    return {}


def _trainings(base: RunConfig, qualities: list[str], out: Path) -> list[Training]:
    common = {"config": dataclasses.asdict(base), "qualities": qualities, "out": str(out)}
    task = "cqdkit.train.multires:multires_model"
    return [Training("A", task, {**common, "model": "a"}),
            Training("A+B", task, {**common, "model": "mixed"}),
            *(Training(f"{slug(spec)}/expert", task, {**common, "model": "expert", "quality": k}, after=("A",))
              for k, spec in enumerate(qualities))]


def _run_multires(base: RunConfig, qualities: list[str], out: Path, sweep: SweepSettings,
                  reporter: Reporter) -> dict[str, Any]:
    from ..routing import Expert, QualityRouter, fit_quality_classifier, spectrum_features

    began = time.perf_counter()
    experiments = _experiments(base, qualities, out, reporter)
    first = experiments[0]
    cfg = first.config
    for spec, experiment in zip(qualities, experiments):
        if experiment.privileged:
            raise CqdkitError(
                f"degradation {spec!r} adds privileged channels to x, so model A does not take RGB images; "
                "multires routes RGB images only"
            )
        if experiment.teacher_directory != first.teacher_directory:
            raise CqdkitError(
                f"qualities {qualities[0]!r} and {spec!r} give different clean views x (e.g. different crops), "
                "so they share no model A; route qualities whose degradations leave x unchanged"
            )
    expert_method = first.method.name  # auto: A+CQD, or CQD when the student cannot start from A
    expert_title = first.method.title

    run_sweep(_trainings(base, qualities, out), out, sweep, reporter=reporter)  # then each model is loaded
    a = first.train_or_load("a")
    experts = [experiment.train_or_load(expert_method) for experiment in experiments]
    mixed_model, mixed_norm, mixed_dir = _train_mixed(experiments, out)

    names = [CLEAN, *qualities]
    router = QualityRouter(
        names,
        [Expert(a.architecture, a.model, a.normalizer, {"method": "a"})]
        + [Expert(e.architecture, e.model, e.normalizer, {"method": expert_method}) for e in experts],
        num_classes=first.data.num_classes,
        image_size=cfg.image_size,
        info={"classes": first.data.classes, "dataset": cfg.dataset,
              "pipelines": {spec: e.maker.describe() for spec, e in zip(qualities, experiments)}},
    )
    hardware = first.hardware
    batch = max(cfg.batch_size, 64)
    train_parts = [(first.train_set, "x")] + [(e.train_set, "z") for e in experiments]
    features = [spectrum_features(router, data, view, batch_size=batch, device=hardware.device)
                for data, view in train_parts]
    router_train_accuracy = fit_quality_classifier(router, features)

    # Every model on every quality's test views.
    test_parts = [(first.test_set, "x")] + [(e.test_set, "z") for e in experiments]
    expert_titles = ["A"] + [f"{expert_title} [{spec}]" for spec in qualities]
    models = list(zip(expert_titles, [a, *experts]))
    predictions: dict[str, list[torch.Tensor]] = {}  # per model, per test set: the predicted classes
    labels: list[torch.Tensor] = []
    for title, model, normalizer in [(t, m.model, m.normalizer) for t, m in models] + [("A+B", mixed_model, mixed_norm)]:
        predictions[title] = []
        for name, (data, view) in zip(names, test_parts):
            logits, truth = predict(model, normalizer, data, view, hardware, batch_size=batch, name=f"{title} on {name}",
                                    reporter=first.reporter)
            predictions[title].append(logits.argmax(1))
            if len(labels) < len(test_parts):
                labels.append(truth)
    correct = {title: [p == y for p, y in zip(predicted, labels)] for title, predicted in predictions.items()}
    # The router answers with its chosen expert: the experts' predictions gathered by the predicted quality
    # (what QualityRouter.forward computes, without running every expert a second time).
    routed = [_predict_quality(router, data, view, hardware, batch) for data, view in test_parts]
    correct["Multi-res"] = [
        torch.stack([predictions[title][s] for title in expert_titles]).gather(0, chosen.view(1, -1))[0] == labels[s]
        for s, chosen in enumerate(routed)
    ]
    correct["Oracle"] = [correct[title][k] for k, title in enumerate(expert_titles)]

    test_sets = [*names, MIXTURE]
    rows = []
    for title, hits in correct.items():
        scores = [_mean(h) for h in hits] + [_mean(torch.cat(hits))]
        rows.append({"model": title, "accuracy": dict(zip(test_sets, scores))})
    quality_hits = [predicted == k for k, predicted in enumerate(routed)]
    result: dict[str, Any] = {
        "qualities": names,
        "test_sets": test_sets,
        "rows": rows,
        "expert_method": expert_method,
        "router": {
            "train_accuracy": router_train_accuracy,
            "test_accuracy": _mean(torch.cat(quality_hits)),
            "test_accuracy_per_quality": {name: _mean(h) for name, h in zip(names, quality_hits)},
            "confusion": _confusion(routed, len(names)),
            "features": f"log |DFT2(gray)|, {router.spectrum.out_size}x{router.spectrum.out_size}",
        },
        "sizes": {"train": len(first.train_set), "test": len(first.test_set)},
        "dataset": cfg.dataset,
        "teacher": cfg.teacher,
        "student": cfg.student,
        "epochs": cfg.epochs,
        "image_size": cfg.image_size,
        "seed": cfg.seed,
        "models": {**{title: str(m.directory) for title, m in models}, "A+B": str(mixed_dir)},
        "wall_seconds": time.perf_counter() - began,
    }
    if is_main_process():
        router.save(out / "router.safetensors")
        atomic_write_json(out / "table3.json", result)
        atomic_write_bytes(out / "table3.md", to_markdown(result).encode())
    return result


def _check_qualities(qualities: list[str]) -> None:
    if not qualities:
        raise CqdkitError("multires needs at least one degradation spec (--degrade)")
    if CLEAN in qualities:
        raise CqdkitError(f"{CLEAN!r} is always the first quality (the views x); give only degradation specs")
    from ..degradations import parse_spec

    parsed = [parse_spec(q) for q in qualities]  # with defaults: lowres and lowres:size=50 are the same
    repeated = sorted({q for q, ops in zip(qualities, parsed) if parsed.count(ops) > 1})
    if repeated:
        raise CqdkitError(f"the same degradation given more than once: {', '.join(repeated)}")


def _train_mixed(experiments: list[Any], out: Path) -> tuple[nn.Module, Normalizer, Path]:
    """Model A+B: the student architecture, from its initial weights, trained on clean x and every z."""
    first = experiments[0]
    cfg = first.config
    optimization = cfg.optimization()
    depends = {
        "x": first.x_pipeline(),
        "pipelines": [e.maker.describe() for e in experiments],
        "fixed_z": cfg.fixed_train_z,
        "student": [cfg.student, cfg.pretrained, cfg.student_weights],
        "optimization": dataclasses.asdict(optimization),
    }
    key = hashlib.sha256(json.dumps(depends, sort_keys=True, default=str).encode()).hexdigest()[:12]
    directory = out / f"mixed-{key}"
    model, normalizer = first.initial_model(METHODS["b"])  # the same initial weights as method b
    union = MixedQualities([(first.train_set, "x")] + [(e.train_set, "z") for e in experiments])
    fit(model, normalizer, union, Objective(view="z"), optimization, first.hardware, directory,
        name="A+B", resume=first.resume, on_epoch=union.set_epoch, reporter=first.reporter)
    if is_main_process():
        save_model(directory / "model.safetensors", model, {
            "architecture": cfg.student,
            "method": "mixed",
            "num_classes": first.data.num_classes,
            "in_chans": 3,
            "image_size": cfg.image_size,
            "mean": normalizer.mean,
            "std": normalizer.std,
            "classes": first.data.classes,
            "pipelines": depends["pipelines"],
        })
    return model, normalizer, directory


@torch.no_grad()
def _predict_quality(router: Any, dataset: Dataset, view: str, hardware: Hardware, batch_size: int) -> torch.Tensor:
    """The router's predicted quality index for each image of one view of ``dataset``."""
    router.to(hardware.device).eval()
    qualities = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=hardware.workers):
        qualities.append(router.predict_quality(batch.view(view).to(hardware.device)).cpu())
    return torch.cat(qualities)


def _mean(hits: torch.Tensor) -> float:
    return float(hits.float().mean()) if len(hits) else float("nan")


def _confusion(predicted: list[torch.Tensor], k: int) -> list[list[int]]:
    """``confusion[true][predicted]`` counts of the router's quality predictions on the test sets."""
    return [torch.bincount(p, minlength=k).tolist() for p in predicted]


def to_markdown(result: dict[str, Any]) -> str:
    """Table 3 as markdown: one row per model, one column per test set, then the router's accuracy."""
    sets = result["test_sets"]
    router = result["router"]
    lines = [
        f"Per-image top-1 accuracy (%) on the test split, dataset {result['dataset']}, teacher {result['teacher']}, "
        f"student {result['student']}; experts: A for {CLEAN}, {result['expert_method']} per quality; "
        f"{MIXTURE} = all test sets together.",
        "",
        "| model | " + " | ".join(f"test on {name}" for name in sets) + " |",
        "|---|" + "---:|" * len(sets),
    ]
    for row in result["rows"]:
        cells = [f"{100 * row['accuracy'][name]:.1f}" for name in sets]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    per_quality = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in router["test_accuracy_per_quality"].items())
    lines += [
        "",
        f"Quality router ({router['features']}, linear): train accuracy {100 * router['train_accuracy']:.1f}%, "
        f"test accuracy {100 * router['test_accuracy']:.1f}% ({per_quality}).",
    ]
    return "\n".join(lines) + "\n"
