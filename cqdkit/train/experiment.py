"""One experiment: a dataset, a degradation, a teacher and a student, and the models the methods train.

:class:`Experiment` owns the data (official train/test split, a seeded validation split carved from
train, paired x/z views) and trains each method's model at most once, in its own sub-directory, so that
``run``, ``table`` and ``tune`` share models instead of retraining them: A is trained once and reused as
the teacher of CQD, the start of A→B and A+CQD, and across degradations that leave x unchanged.

When the degradation appends privileged channels to x (a mask the student never sees), A and every model
trained on x take ``in_chans`` = x's channel count, while the students keep RGB: A→B and A+CQD, which start
from A's weights, are then impossible, and ``--method auto`` picks CQD.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import platform
import shutil
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..errors import CqdkitError, PluginError
from ..files import atomic_write_json, atomic_write_text
from ..losses.build import build_terms
from ..losses.spec import AUTO as STRENGTH_AUTO
from ..losses.spec import TEMPERATURE, TermSpec, apply_run_values, loss_text, parse_loss
from ..losses.term import DistillContext, WeightedTerm
from ..models.features import NO_LAYERS, Layers
from ..models.preprocessing import AverageImage, Normalizer
from ..models.weights import save_model
from ..plugin import PluginManager, get_plugin_manager
from ..predictor import Predictor
from ..reporting import Reporter
from .config import RunConfig
from .distributed import is_main_process
from .engine import FitResult, Objective, Optimization, TeacherSignal, fit
from .evaluate import accuracy, calibrated_nll, negative_log_likelihood, predict
from .hardware import Hardware, cpu_has_fast_bf16
from .methods import AUTO, Method, get_method, resolve
from .probe import cpu_precision
from .tune import tuned_values
from .teacher import FrozenTeacher, compute_features, feature_bytes, teacher_features, teacher_logits


#: The file in each model's folder recording what determines the model (:meth:`Experiment.model_settings`).
SETTINGS_FILE = "settings.json"

#: LSUV (``--init``) scales each layer on this many training images (the paper's mini-batch size).
LSUV_IMAGES = 64


def _version(distribution: str) -> str | None:
    """An installed distribution's version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@dataclass
class TrainedModel:
    """A trained model with what it takes to feed it."""

    method: Method
    architecture: str
    model: nn.Module
    normalizer: Normalizer
    fit: FitResult
    directory: Path
    in_chans: int  # input channels: x's for models trained on x, 3 (RGB z) for students
    hardware: Hardware  # how it computes (bf16 on the CPU only where measured faster)


class Experiment:
    """Data and models of one CQD experiment.

    Args:
        config: the run's settings (resolved on construction; ``method="auto"`` becomes the distilled
            method the architectures and x's channels allow).
        directory: where models, logs and results go.
        teacher_root: a folder shared with other experiments; model A then lives in
            ``teacher_root/a-<key>``, the key hashing everything A depends on (the x pipeline, the teacher
            and the optimisation), so experiments that would train the same A share it.
        resume: continue models whose checkpoints exist (finished ones are just loaded).
        reporter: where training and evaluation show their progress (None: on stderr, as in a notebook;
            ``Reporter.silent()`` shows nothing).
    """

    def __init__(
        self,
        config: RunConfig,
        directory: Path,
        *,
        teacher_root: Path | None = None,
        resume: bool = True,
        reporter: Reporter | None = None,
        manager: PluginManager | None = None,
    ) -> None:
        from ..data import PairedDataset, load_dataset, split_folds, split_train_val
        from ..data.unlabeled import check_boxes, hide_labels, read_unlabeled
        from ..degradations import PairMaker

        cfg = config.resolved()
        self.directory = Path(directory)
        self.resume = resume
        #: Whether a model's settings may differ from those it was started with (``--resume`` with an option
        #: that may change on resume, recorded in ``config.json``).
        self.settings_may_differ = False
        #: The settings changed on resume so far (:func:`cqdkit.train.run.changes_on_resume`).
        self.changed_on_resume: list[dict[str, Any]] = []
        self.trained_here: set[Path] = set()  # folders this experiment (and its siblings) trained into: resumable
        self.reporter = reporter if reporter is not None else Reporter.default()
        self.manager = manager or get_plugin_manager()
        self.hardware = cfg.hardware()
        self.data = load_dataset(
            cfg.dataset, cfg.root, skip_bad=cfg.skip_bad, manager=self.manager, **cfg.dataset_options
        )
        self.crop = self.data.has_boxes if cfg.crop is None else cfg.crop
        try:
            self.maker = PairMaker(cfg.degrade, size=cfg.image_size, crop=self.crop, augment=cfg.augment,
                                   manager=self.manager)
        except CqdkitError as error:  # name the option (or the config file's key) the spec came from
            if "--degrade" in str(error):
                raise
            raise CqdkitError(f"--degrade {cfg.degrade!r}: {error}") from None
        self.method = resolve(cfg.method, **self._method_context(cfg))
        self.config = dataclasses.replace(cfg, method=self.method.name)
        self._check_plugins()
        if cfg.folds:
            train, val = split_folds(self.data.train, cfg.folds, cfg.fold, cfg.seed)
        else:
            train, val = split_train_val(self.data.train, cfg.val_fraction, cfg.seed)
        paired = dict(maker=self.maker, seed=cfg.seed, dataset_name=self.data.name)
        labelled, unlabelled = hide_labels(train, cfg.label_fraction, cfg.seed) if cfg.label_fraction < 1 else (train, [])
        self._unlabeled_files = ""  # what the unlabelled folder holds, for the keys of cached teacher outputs
        if cfg.unlabeled:
            extra, problems = read_unlabeled(cfg.unlabeled, skip_bad=cfg.skip_bad)
            self.data.problems.extend(problems)
            check_boxes(extra, self.crop or self.maker.needs_box, f"--unlabeled {cfg.unlabeled}")
            unlabelled = unlabelled + extra
            self._unlabeled_files = hashlib.sha256(json.dumps(
                [(str(r.path.resolve()), r.path.stat().st_size, r.path.stat().st_mtime_ns) for r in extra]).encode()
            ).hexdigest()[:16]
        self.train_set = PairedDataset(labelled, split="train", fixed_z=cfg.fixed_train_z, **paired)
        #: What distilled students train on: the labelled images and, with --distill-unlabeled, the unlabelled
        #: ones (--label-fraction, --unlabeled), which only the distillation terms learn from.
        self.distill_set = self.train_set
        if unlabelled and cfg.distill_unlabeled:
            self.distill_set = PairedDataset(labelled + unlabelled, split="train", fixed_z=cfg.fixed_train_z, **paired)
        self.val_set = PairedDataset(val, split="val", **paired)
        self.test_set = PairedDataset(self.data.test, split="test", **paired)
        for split, records in (("training", train), ("test", self.data.test)):
            if not records:
                skipped = f" ({len(self.data.problems)} bad samples were skipped)" if self.data.problems else ""
                raise CqdkitError(f"dataset {self.data.name!r} at {self.data.root} has no {split} images left"
                                  f"{skipped}; nothing to train or test on")
        if self.data.problems:
            self._announce_skipped()
        self._models: dict[str, TrainedModel] = {}
        self._probed: dict[str, Layers] = {}
        self._checked_losses: set[str] = set()  # loss specs whose terms were built and probed once
        self._announced_init: set[str] = set()  # roles whose LSUV initialisation was announced
        self._strengths: dict[str, Any] = {}  # distilled method -> its chosen strength (cqdkit.train.strength)
        self._shared: dict[str, Experiment] = {}  # method -> the experiment that trains it (a sibling's parent)
        self.teacher_directory = Path(teacher_root) / f"a-{self.teacher_key()}" if teacher_root else self.directory / "a"
        self._check_loss()

    def _announce_skipped(self, shown: int = 3) -> None:
        """Say on screen which samples ``--skip-bad`` left out (all of them are in config.json)."""
        problems = self.data.problems
        more = f"; {len(problems) - shown} more" if len(problems) > shown else ""
        self.reporter.message(f"--skip-bad left out {len(problems)} bad sample(s) of {self.data.name!r}: "
                              + "; ".join(problems[:shown]) + more + " (all listed in config.json, dataset.skipped)")

    def _check_plugins(self) -> None:
        """Find the backbones (a third-party one runs once on zeros) and their initial weights now, before any
        training (a misspelt name, a broken forward pass or weights that cannot be had are a one-line
        error, not a surprise after the teacher trained)."""
        from ..models.backbone import check_forward

        cfg = self.config
        for architecture, in_chans in ((cfg.teacher, self.x_channels), (cfg.student, 3)):
            self.manager.backbone(architecture)
            check_forward(architecture, num_classes=self.data.num_classes, in_chans=in_chans,
                          image_size=cfg.image_size, manager=self.manager)
        self.initial_weights = {role: self._weights_source(role) for role in ("teacher", "student")}

    def _check_loss(self) -> None:
        """Parse the loss spec and build its terms once, before any training: a misspelt name, a layer the network
        lacks or a term that breaks its contract is a one-line error, not a surprise after the teacher trained."""
        cfg = self.config
        self.loss_terms = parse_loss(cfg.loss, manager=self.manager)
        fixed = self.given_terms(self.distilled_method())
        if all(spec.complete() for spec in fixed):
            build_terms(fixed, self.distill_context(fixed), manager=self.manager, seed=cfg.seed)
            self._checked_losses.add(loss_text(fixed))
        else:  # a strength chosen on validation: a plugin that breaks its contract is found at a stand-in strength
            stand_in = [dataclasses.replace(spec, weight=1.0 if spec.weight is None else spec.weight,
                                            params={**spec.params, TEMPERATURE: spec.temperature or 4.0}
                                            if spec.tempered else spec.params) for spec in fixed]
            try:
                build_terms(stand_in, self.distill_context(stand_in), manager=self.manager, seed=cfg.seed)
            except PluginError:
                raise
            except CqdkitError:
                pass  # a setting the stand-in chose (a layer the search would not pick): the search decides

    def _weights_source(self, role: str) -> dict[str, Any]:
        """Where ``role``'s initial weights come from: a weights file, pretrained weights, or a seeded init."""
        from ..files import sha256
        from ..models.pretrained import locate_pretrained
        from ..models.weights import check_weights_file

        cfg = self.config
        architecture = cfg.teacher if role == "teacher" else cfg.student
        weights = cfg.teacher_weights if role == "teacher" else cfg.student_weights
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise CqdkitError(f"--{role}-weights {weights}: no such file")
            check_weights_file(path)
            return {"source": "file", "path": str(path.resolve()), "sha256": sha256(path)}
        if cfg.pretrained:
            return locate_pretrained(architecture)
        return {"source": "seeded random init", "seed": self._init_seed(architecture, role), "init": cfg.init}

    def _init_seed(self, architecture: str, role: str) -> int:
        """The seed of ``architecture``'s random initialisation: the same for every method of a role (the students'
        from ``--student-seed`` when it is given)."""
        cfg = self.config
        seed = cfg.student_seed if role == "student" and cfg.student_seed is not None else cfg.seed
        return int(hashlib.sha256(f"{seed}:{architecture}".encode()).hexdigest()[:8], 16)

    def _method_context(self, cfg: RunConfig) -> dict[str, Any]:
        """What decides which methods can run: the architectures and x's channels."""
        return {"teacher": cfg.teacher, "student": cfg.student, "x_channels": self.maker.x_channels,
                "degrade": cfg.degrade}

    @property
    def x_channels(self) -> int:
        """x's channel count: 3, plus the privileged channels the degradation appends."""
        return len(self.maker.x_channels)

    @property
    def privileged(self) -> bool:
        """Whether x carries channels beyond RGB (which only models trained on x see)."""
        return self.x_channels != 3

    def in_chans(self, method: Method) -> int:
        """Input channels of ``method``'s model: x's for a model trained on x, else RGB."""
        return self.x_channels if method.view == "x" else 3

    def distilled_method(self) -> Method:
        """The distilled student of this experiment: its own method when that distils, else the one
        ``--method auto`` picks (A+CQD, or CQD when the student cannot start from A)."""
        if self.method.distill:
            return self.method
        return resolve(AUTO, **self._method_context(self.config))

    def can_train(self, method_name: str) -> bool:
        """Whether this experiment's architectures and inputs allow ``method_name``."""
        return get_method(method_name).unavailable(**self._method_context(self.config)) is None

    # -- description --------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything needed to reproduce the experiment (written as ``config.json``)."""
        return {
            "run": self.config.to_json(),
            "distillation": self.distillation(),
            "initial_weights": self.initial_weights,
            "pipeline": self.maker.describe(),
            "crop": self.crop,
            "dataset": {
                "name": self.data.name,
                "root": str(self.data.root),
                "classes": self.data.num_classes,
                "train": len(self.train_set),
                "unlabelled": len(self.distill_set) - len(self.train_set),
                "val": len(self.val_set),
                "test": len(self.test_set),
                "boxes": self.data.has_boxes,
                "skipped": self.data.problems,
            },
            "plugins": self.plugins(),
            **({"changed_on_resume": self.changed_on_resume} if self.changed_on_resume else {}),
            "environment": {
                "cqdkit": __version__,
                "torch": torch.__version__,
                "timm": _version("timm"),
                "python": platform.python_version(),
                "device": str(self.hardware.device),
                "precision": self.precision(),
            },
        }

    def precision(self) -> str:
        """What the models compute in, in words: ``--amp`` asks for bf16 autocast, which only CUDA and CPUs with
        bf16 hardware have (on those CPUs each model uses it only where a probe measured it faster)."""
        hardware = self.hardware
        if not hardware.amp:
            return "float32 (--no-amp)"
        if hardware.cuda:
            return "bf16 autocast (CUDA)"
        if hardware.device.type == "cpu" and cpu_has_fast_bf16():
            return ("bf16 autocast for the models a probe measured faster with it (each model's precision.json), "
                    "float32 otherwise")
        return f"float32 (this {hardware.device.type} has no fast bf16, so --amp changes nothing)"

    def plugins(self) -> list[dict[str, Any]]:
        """Every plugin that takes part in this experiment: what it provides, its distribution and version
        (``null`` for cqdkit's built-ins, which are versioned with cqdkit)."""
        cfg = self.config
        used = [("dataset", cfg.dataset), ("backbone", cfg.teacher), ("backbone", cfg.student)]
        used += [("loss", term.name) for term in parse_loss(cfg.loss, self.manager)]  # every term of softce+rkd
        used += [("degradation", name) for name, _params in self.maker.op_params]
        rows = []
        for kind, name in dict.fromkeys(used):
            info = self.manager.provider(kind, name)
            if info is not None:
                rows.append({"kind": kind, "name": name, "plugin": info.name, "distribution": info.dist,
                             "version": info.version, "builtin": info.builtin})
        return rows

    def distillation(self, method: Method | None = None) -> dict[str, Any]:
        """The distillation ``method`` (default: this experiment's distilled method) uses: its terms, each with its
        weight lambda (and a logit loss's temperature); for one term, its ``temperature`` and ``lambda`` at the top;
        ``chosen_by`` (``options``, ``tuned`` or ``validation``) and, for a search that has run, its evidence.
        It never starts a search: before one, ``auto`` values are null.

        ``logit_weight`` is lambda / (C * T^2) for the softened cross-entropy: for large T, the gradient of
        lambda * L2 on each student logit is about ``logit_weight * (student logit - teacher logit)`` (with
        no T^2 factor, one lambda means less for more classes or a higher T).
        """
        from .strength import recorded_strength

        method = method or self.distilled_method()
        classes = self.data.num_classes
        specs = self.given_terms(method)
        summary: dict[str, Any] = {"method": method.name, "loss": self.config.loss, "classes": classes}
        if all(spec.complete() for spec in specs):
            summary["chosen_by"] = "tuned" if self._tuned(method) else "options"
        else:
            summary["chosen_by"] = "validation"
            strength = recorded_strength(self, method)
            if strength is not None:
                specs = strength.terms
                summary.update(distillation_helps=strength.helps, search=strength.summary())
        terms = []
        for spec in specs:
            row: dict[str, Any] = {"name": spec.name, "spec": spec.text(), "lambda": spec.weight,
                                   "temperature": spec.temperature}
            if spec.name == "softce" and spec.complete():
                row["logit_weight"] = spec.weight / (classes * spec.temperature**2)
            terms.append(row)
        summary["terms"] = terms
        if len(terms) == 1:
            summary.update(temperature=terms[0]["temperature"], **{"lambda": terms[0]["lambda"]},
                           logit_weight=terms[0].get("logit_weight"))
        return summary

    def x_pipeline(self, dataset: Any = None) -> dict[str, Any]:
        """What x of ``dataset`` (default: the labelled training set) depends on: the dataset, the split and how
        x is cut and sized (not the degradation)."""
        cfg = self.config
        dataset = dataset or self.train_set
        return {
            "dataset": cfg.dataset,
            "root": str(self.data.root),
            "dataset_options": cfg.dataset_options,
            "val_fraction": cfg.val_fraction,
            "folds": [cfg.folds, cfg.fold],
            "seed": cfg.seed,
            "train_ids": hashlib.sha256(json.dumps(dataset.ids()).encode()).hexdigest()[:16],
            **({"unlabeled_files": self._unlabeled_files} if dataset is self.distill_set and self._unlabeled_files
               else {}),
            **self.maker.describe_x(),
        }

    def teacher_key(self) -> str:
        """A short hash of everything model A depends on."""
        cfg = self.config
        depends = {
            "x": self.x_pipeline(),
            "teacher": cfg.teacher,
            "initial_weights": self.initial_weights["teacher"],
            "optimization": [cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_end, cfg.momentum, cfg.weight_decay,
                             cfg.clip_grad_norm],
        }
        return hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]

    # -- models -------------------------------------------------------------------------------

    def predictor(self, method_name: str) -> Predictor:
        """``method_name``'s trained model (trained now if need be) for new images: eval mode, this run's
        preprocessing and class names (:class:`~cqdkit.predictor.Predictor`).

        Example:
            >>> experiment = Experiment(RunConfig(degrade="tps"), Path("runs/notebook"))  # doctest: +SKIP
            >>> experiment.predictor("cqd").predict("bird.jpg").names                        # doctest: +SKIP
            ['Laysan_Albatross']
        """
        trained = self.train_or_load(method_name)
        return Predictor(trained.model, trained.normalizer, self.maker, self.data.classes, in_chans=trained.in_chans,
                         reporter=self.reporter)

    def train_or_load(self, method_name: str, *, epochs: int | None = None) -> TrainedModel:
        """The trained model of ``method_name``: trained now (and A first, when it needs A), continued from
        its checkpoint, or loaded when finished, in eval mode. Each method is trained at most once per
        experiment.

        A distilled method whose distillation strength is chosen on validation (``auto``) is searched first
        (:mod:`cqdkit.train.strength`); when no strength beats lambda = 0 there, the method's model *is* its
        baseline's (B for CQD, A→B for A+CQD). ``epochs`` stops after that many epochs of the schedule, as a
        process killed then would (a later call continues): the model is then not kept as finished.

        Raises:
            CqdkitError: the architectures or x's channels do not allow the method.
        """
        if method_name in self._models:
            return self._models[method_name]
        if method_name in self._shared and self._shared[method_name] is not self:
            return self._shared[method_name].train_or_load(method_name, epochs=epochs)
        method = get_method(method_name)
        method.check(**self._method_context(self.config))
        if method.distill and not self.term_specs(method):  # distillation did not help on validation
            return self._as_baseline(method)
        cfg = self.config
        teacher = self.train_or_load("a") if method.needs_teacher else None
        directory = self.teacher_directory if method.name == "a" else self.directory / method.name
        directory.mkdir(parents=True, exist_ok=True)
        model, normalizer = self.initial_model(method)
        if method.from_teacher and teacher is not None:
            model.load_state_dict(teacher.model.state_dict())
            normalizer = teacher.normalizer  # the input its weights expect (e.g. converted MatConvNet ones)
        self.check_settings(method.name)
        if is_main_process():
            atomic_write_json(directory / SETTINGS_FILE, self.model_settings(method))
        hardware = self._hardware_for(method, model, normalizer, directory)
        dataset = self.distill_set if method.distill else self.train_set
        result = fit(
            model, normalizer, dataset, self.objective(method_name), self.optimization(method), hardware,
            directory, name=method.title, resume=self.resume or directory in self.trained_here,
            on_epoch=dataset.set_epoch,
            validate=self._validation(method, normalizer, hardware), reporter=self.reporter, stop_after=epochs,
        )
        self.trained_here.add(directory)
        model.eval()  # ready to predict: BatchNorm's statistics and dropout frozen
        trained = TrainedModel(method, method.architecture(cfg.teacher, cfg.student), model, normalizer, result,
                               directory, self.in_chans(method), hardware)
        if epochs is not None and epochs < cfg.epochs:
            return trained
        loaded = result.resumed_from >= cfg.epochs  # finished before: its model file is written already
        if is_main_process() and not (loaded and _readable_weights(directory / "model.safetensors")):
            self._save_model(trained)  # (again when the file is missing or damaged)
        self._models[method.name] = trained
        return trained

    def _as_baseline(self, method: Method) -> TrainedModel:
        """``method``'s model when distillation was switched off on validation: its baseline's, saved in the
        method's folder too (with the baseline's log), so every report and export of the method finds it."""
        baseline = self.train_or_load(method.baseline().name)
        directory = self.directory / method.name
        trained = dataclasses.replace(baseline, method=method, directory=directory)
        if is_main_process():
            directory.mkdir(parents=True, exist_ok=True)
            if (baseline.directory / "log.jsonl").exists():
                atomic_write_text(directory / "log.jsonl", (baseline.directory / "log.jsonl").read_text())
            self._save_model(trained)
        self._models[method.name] = trained
        return trained

    def _save_model(self, trained: TrainedModel) -> None:
        """``model.safetensors`` and ``model.json`` of a finished model, in its folder: what export reads."""
        cfg = self.config
        save_model(trained.directory / "model.safetensors", trained.model, {
            "architecture": trained.architecture,
            "method": trained.method.name,
            "num_classes": self.data.num_classes,
            "in_chans": trained.in_chans,
            "channels": list(self.maker.x_channels[:trained.in_chans]),
            "image_size": cfg.image_size,
            "mean": trained.normalizer.mean,
            "std": trained.normalizer.std,
            "classes": self.data.classes,
            "pipeline": self.maker.describe(),
            "average_image": _average_image(trained.model),
        })

    def model_settings(self, method: Method) -> dict[str, Any]:
        """Everything that determines ``method``'s trained model: its data and views, architecture, starting
        weights, optimization, distillation terms and teacher (not where or in what precision it computes, which
        may change on resume). Written as ``settings.json`` in its folder; a model trained (or started) with other
        settings is never reused as if trained with these."""
        cfg = self.config
        dataset = self.distill_set if method.distill else self.train_set
        settings: dict[str, Any] = {
            "method": method.name,
            "data": self.x_pipeline(dataset),  # the dataset, the split and x
            "views": self.maker.describe() if method.view == "z" else None,  # z too, for the models that see it
            "architecture": method.architecture(cfg.teacher, cfg.student),
            "in_chans": self.in_chans(method),
            "initial_weights": self.initial_weights[method.role],
            "optimization": dataclasses.asdict(self.optimization(method)),
        }
        if method.needs_teacher:
            settings["teacher"] = self.teacher_key()
        if method.distill:
            settings["distillation"] = [{"term": spec.name, "params": dict(spec.params), "lambda": spec.weight}
                                        for spec in self.term_specs(method)]  # compared as objects: any key order
        return json.loads(json.dumps(settings, default=str))  # as it reads back from the file

    def check_settings(self, method_name: str) -> None:
        """Refuse to continue or reuse a model of ``method_name`` already in its folder that was trained with
        other settings (see :meth:`model_settings`), unless this is a ``--resume`` that changed settings on
        purpose (:attr:`settings_may_differ`). Writes nothing.

        Raises:
            CqdkitError: naming the folder and the settings that differ.
        """
        method = get_method(method_name)
        directory = self.teacher_directory if method.name == "a" else self.directory / method.name
        record = directory / SETTINGS_FILE
        started = (directory / "latest.json").exists() or (directory / "model.safetensors").exists()
        if not started or not record.exists() or self.settings_may_differ:
            return
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CqdkitError(f"{record} cannot be read ({error}); cqdkit cannot tell what the model in "
                              f"{directory} was trained with: choose another --out") from None
        settings = self.model_settings(method)
        differing = sorted(key for key in {**settings, **previous} if settings.get(key) != previous.get(key))
        if differing:
            raise CqdkitError(
                f"{directory} holds a {method.title} model trained with other settings (its {', '.join(differing)} "
                f"differ{'s' if len(differing) == 1 else ''} from this command's: see {record}); cqdkit does not "
                "present it as trained with these. Choose another --out, or give the settings it was trained with")

    def optimization(self, method: Method) -> Optimization:
        """The SGD settings of ``method``: the run's, with the students' data order from ``--student-seed``."""
        optimization = self.config.optimization()
        if method.role == "student" and self.config.student_seed is not None:
            optimization = dataclasses.replace(optimization, seed=self.config.student_seed)
        return optimization

    def _hardware_for(self, method: Method, model: nn.Module, normalizer: Normalizer, directory: Path) -> Hardware:
        """The experiment's hardware, with bf16 autocast on the CPU for this model only where a probe measured it
        faster (CPUs with bf16 hardware). The choice is stored with the model (``precision.json``), so a
        resumed run computes exactly as it started, and for the machine (:func:`~cqdkit.train.probe.cpu_precision`),
        so that every run of the same network and sizes here computes alike, whatever the timing noise."""
        hardware = self.hardware
        if hardware.device.type != "cpu" or not hardware.amp or not cpu_has_fast_bf16():
            return hardware
        record = directory / "precision.json"
        if record.exists():
            chosen = json.loads(record.read_text())
        else:
            cfg = self.config
            chosen = cpu_precision(model, normalizer, hardware,
                                   architecture=method.architecture(cfg.teacher, cfg.student),
                                   batch_size=cfg.batch_size, image_size=cfg.image_size, in_chans=self.in_chans(method))
            atomic_write_json(record, chosen)
        return dataclasses.replace(hardware, cpu_bf16=bool(chosen["cpu_bf16"]))

    def _validation(self, method: Method, normalizer: Normalizer,
                    hardware: Hardware) -> Callable[[nn.Module], float] | None:
        """Accuracy on the validation split's view of ``method`` (x for A, z for students), for each epoch's
        log; None without a validation split."""
        if not len(self.val_set):
            return None

        def validate(model: nn.Module) -> float:
            logits, labels = predict(model, normalizer, self.val_set, method.view, hardware,
                                     batch_size=max(self.config.batch_size, 64), name="validation")
            return accuracy(logits, labels)

        return validate

    def objective(self, method_name: str) -> Objective:
        """What ``method_name`` minimises: CE on its view, plus the distillation terms of Equation 1 (freshly built,
        their own parts initialised) when it distils; the teacher A is trained or loaded first when needed."""
        method = get_method(method_name)
        if not method.distill:
            return Objective(view=method.view)
        teacher = self.train_or_load("a")
        specs = self.term_specs(method)
        check = loss_text(specs) not in self._checked_losses
        terms = build_terms(specs, self.distill_context(specs), manager=self.manager, seed=self.config.seed,
                            check=check)
        self._checked_losses.add(loss_text(specs))
        return Objective(view=method.view, terms=terms, teacher=self._teacher_signal(teacher, terms))

    def term_specs(self, method: Method) -> list[TermSpec]:
        """The distillation terms ``method`` trains with, every weight and temperature set: the run's ``--lambda``
        and ``--temperature``, a ``--tuned`` file's choice for this method and degradation, or, for ``auto``, the
        choice of the search on the validation split (empty when distillation did not help there)."""
        specs = self.given_terms(method)
        if all(spec.complete() for spec in specs):
            return specs
        from .strength import chosen_strength

        return chosen_strength(self, method).terms

    def sibling(self, directory: Path, *, share: tuple[str, ...] = ("a",), reporter: Reporter | None = None,
                **changes: Any) -> Experiment:
        """An experiment of this one's data, split, degradation and teacher with other settings (``changes`` to the
        config: a search's candidate, a table's distilled method), training into ``directory``. The methods in
        ``share`` are this experiment's own (trained or loaded here, once: the teacher and its cached outputs
        always); nothing is loaded again; it reports to ``reporter`` (nothing by default)."""
        other = copy.copy(self)
        other.config = dataclasses.replace(dataclasses.replace(self.config, **changes).resolved(),
                                           method=self.method.name)
        other.directory = Path(directory)
        other.reporter = reporter or Reporter.silent()
        other._models = {}
        other._shared = {name: self._shared.get(name, self) for name in share}
        other._checked_losses = set()
        other._strengths = {}
        other.initial_weights = {role: other._weights_source(role) for role in ("teacher", "student")}
        other._check_loss()
        return other

    def _tuned(self, method: Method) -> dict[str, float]:
        """T and lambda a ``--tuned`` file gives ``method`` on this degradation (empty without one)."""
        cfg = self.config
        return tuned_values(cfg.tuned).get(method.name, {}).get(cfg.degrade, {}) if cfg.tuned else {}

    def given_terms(self, method: Method) -> list[TermSpec]:
        """The loss spec's terms with the values the run gives (``auto`` leaves them unset)."""
        cfg = self.config
        tuned = self._tuned(method)
        lam, temperature = tuned.get("lam", cfg.lam), tuned.get("temperature", cfg.temperature)
        return apply_run_values(self.loss_terms, None if lam == STRENGTH_AUTO else lam,
                                None if temperature == STRENGTH_AUTO else temperature)

    def distill_context(self, specs: list[TermSpec]) -> DistillContext:
        """What the terms' factories get: both networks' layers (probed once, only when a term is not a logit
        loss), the classes and the training samples."""
        return DistillContext(
            teacher=self._layers("a") if any(not spec.logit for spec in specs) else NO_LAYERS,
            student=self._layers("b") if any(not spec.logit for spec in specs) else NO_LAYERS,
            num_classes=self.data.num_classes,
            num_samples=len(self.distill_set),
        )

    def _layers(self, method_name: str) -> Layers:
        """The layers of ``method_name``'s network (``a``: the teacher on x, ``b``: the student on z), probed once
        at the run's input size."""
        if method_name not in self._probed:
            method = get_method(method_name)
            with torch.random.fork_rng(devices=[]):
                model, _normalizer = self.initial_model(method, from_data=False)
            self._probed[method_name] = Layers.probe(
                model, image_size=self.config.image_size, in_chans=self.in_chans(method),
                architecture=method.architecture(self.config.teacher, self.config.student))
        return self._probed[method_name]

    def initial_model(self, method: Method, *, from_data: bool = True) -> tuple[nn.Module, Normalizer]:
        """``method``'s backbone, freshly built with its seeded initialisation (the same for every method of
        a role, so rows compare fairly), or its ``--pretrained`` / weights-file start, and its normalisation.
        ``from_data=False`` skips the part of the init that reads training images (LSUV, ``--init``): for probes
        of speed and layer shapes, which never train."""
        from ..models import create_backbone, load_weights

        cfg = self.config
        architecture = method.architecture(cfg.teacher, cfg.student)
        torch.manual_seed(self._init_seed(architecture, method.role))
        source = self.initial_weights[method.role]
        model = create_backbone(
            architecture, num_classes=self.data.num_classes, pretrained=source["source"] in ("timm hub", "plugin"),
            in_chans=self.in_chans(method), manager=self.manager,
        )
        if source["source"] == "file" and not method.from_teacher:
            load_weights(model, source["path"])
        normalizer = Normalizer.for_model(model)
        if from_data and source["source"] == "seeded random init" and not method.from_teacher and self._lsuv(model):
            self._lsuv_init(method, model, normalizer)
        return model, normalizer

    def _lsuv(self, model: nn.Module) -> bool:
        """Whether a network that starts from a random init is initialised by LSUV (``--init``)."""
        from .engine import is_deep_plain

        return self.config.init == "lsuv" or (self.config.init == "auto" and is_deep_plain(model))

    def _lsuv_init(self, method: Method, model: nn.Module, normalizer: Normalizer) -> None:
        """LSUV (:mod:`cqdkit.models.lsuv`) on up to :data:`LSUV_IMAGES` training images of the method's view, spread
        evenly over the training split (deterministic: the same init for every method of the role)."""
        from ..models.lsuv import lsuv_init, weight_layers

        count = min(LSUV_IMAGES, len(self.train_set))
        indices = [round(k * len(self.train_set) / count) for k in range(count)]
        images = torch.stack([getattr(self.train_set[i], method.view)[:self.in_chans(method)] for i in indices])
        lsuv_init(model, normalizer(images))
        role = method.role
        if role not in self._announced_init:
            self._announced_init.add(role)
            self.reporter.message(f"{role} {method.architecture(self.config.teacher, self.config.student)}: LSUV "
                                  f"initialisation on {count} training {method.view} images "
                                  f"({len(weight_layers(model))} weight layers; --init random keeps its own)")

    def _teacher_signal(self, teacher: TrainedModel, terms: list[WeightedTerm]) -> TeacherSignal:
        """The teacher's outputs for the terms: its logits and the features of the layers they read, computed once
        and cached when x is the same every epoch and they fit ``--feature-cache-gb``; else the teacher online."""
        frozen = FrozenTeacher(teacher.model).to(self.hardware.device)
        layers = tuple(dict.fromkeys(layer for term in terms for layer in term.term.teacher_layers))
        live = [term.key for term in terms if term.term.live_teacher]
        cfg = self.config
        if not cfg.cache_teacher or self.maker.x_random or live:
            why = ("the x views change every epoch" if self.maker.x_random else
                   f"{', '.join(live)} asks for the live teacher" if live else "--no-cache-teacher")
            self.reporter.message(f"the teacher runs online on every batch ({why})")
            return TeacherSignal(teacher=frozen, normalizer=teacher.normalizer, layers=layers)
        features: dict[str, Any] = {}
        same_pass: dict[str, torch.Tensor] = {}  # the logits of the pass that computed the features
        if layers:
            shapes = {layer: self._layers("a").shape(layer) for layer in layers}
            size, budget = feature_bytes(shapes, len(self.distill_set)), self._feature_budget()
            listing = ", ".join(f"{layer} {'x'.join(map(str, shape))}" for layer, shape in shapes.items())
            if size > budget:
                self.reporter.message(f"the teacher runs online on every batch: its features ({listing}, float16, "
                                      f"{len(self.distill_set)} images) would take {_gigabytes(size)}, over the "
                                      f"{_gigabytes(budget)} budget (--feature-cache-gb, half the free disk)")
                return TeacherSignal(teacher=frozen, normalizer=teacher.normalizer, layers=layers)
            features = teacher_features(
                frozen.model,
                lambda arrays: same_pass.update(logits=compute_features(
                    frozen, teacher.normalizer, self.distill_set, self.hardware, arrays,
                    batch_size=max(cfg.batch_size, 64), reporter=self.reporter)),
                x_pipeline=self.x_pipeline(self.distill_set), cache_dir=self.teacher_directory, shapes=shapes,
                num_samples=len(self.distill_set))
            self.reporter.message(f"teacher features cached ({listing}, float16, {_gigabytes(size)}) in "
                                  f"{self.teacher_directory}")

        if not any(term.term.teacher_logits for term in terms):  # the terms read features only
            return TeacherSignal(features=features)

        def compute() -> torch.Tensor:
            if "logits" in same_pass:
                return same_pass["logits"]
            logits, _labels = predict(
                frozen, teacher.normalizer, self.distill_set, "x", self.hardware,
                batch_size=max(cfg.batch_size, 64), name="teacher logits", reporter=self.reporter,
            )
            return logits

        cached = teacher_logits(
            frozen.model,
            compute,
            x_pipeline=self.x_pipeline(self.distill_set),
            x_random=self.maker.x_random,
            cache_dir=self.teacher_directory,
            shape=(len(self.distill_set), len(self.data.classes)),
        )
        return TeacherSignal(cached=cached, features=features)

    def _feature_budget(self) -> int:
        """Bytes the teacher's cached features may take: ``--feature-cache-gb``, and at most half the free disk."""
        self.teacher_directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.teacher_directory).free
        return int(min(self.config.feature_cache_gb * 2**30, free / 2))

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, method_name: str, split: str = "test") -> dict[str, float]:
        """Per-image top-1 accuracy (``<split>_<view>``), negative log-likelihood (``<split>_<view>_nll``) and
        calibrated NLL (``..._calibrated_nll``, see :func:`~cqdkit.train.evaluate.calibrated_nll`) of a method's
        model on the x and z views of ``split`` (``"test"`` or ``"val"``).

        With privileged channels in x, an RGB student is scored on x's RGB channels, and the teacher on z
        scores NaN: z lacks the channels it needs.
        """
        return self.score(self.train_or_load(method_name), split)

    def score(self, trained: TrainedModel, split: str = "test") -> dict[str, float]:
        """:meth:`evaluate`'s scores of a trained model (a search's partly trained candidate too)."""
        dataset = {"test": self.test_set, "val": self.val_set}[split]
        scores = {}
        for view, channels in (("x", self.x_channels), ("z", 3)):
            if trained.in_chans > channels:
                for suffix in ("", "_nll", "_calibrated_nll"):
                    scores[f"{split}_{view}{suffix}"] = math.nan
                continue
            logits, labels = predict(
                trained.model, trained.normalizer, dataset, view, trained.hardware,
                batch_size=max(self.config.batch_size, 64), name=f"{trained.method.title} on {split} {view}",
                channels=trained.in_chans if trained.in_chans < channels else None, reporter=self.reporter,
            )
            scores[f"{split}_{view}"] = accuracy(logits, labels)
            scores[f"{split}_{view}_nll"] = negative_log_likelihood(logits, labels)
            scores[f"{split}_{view}_calibrated_nll"] = calibrated_nll(logits, labels)
        return scores

    def write_config(self) -> None:
        atomic_write_json(self.directory / "config.json", self.describe())


def _readable_weights(path: Path) -> bool:
    """Whether ``path`` is a safetensors file whose header and tensors are all there (not cut short)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
        return True
    except Exception:  # noqa: BLE001 (missing, cut short or not safetensors: each library error type)
        return False


def _average_image(model: nn.Module) -> dict[str, Any] | None:
    """What ``model.json`` says about a MatConvNet average image the network subtracts itself (None: none)."""
    for module in model.modules():
        if isinstance(module, AverageImage) and module.residual.numel():
            return {"size": list(module.residual.shape[-2:]), "spatial": True,
                    "subtracted": "by the network, resized bilinearly to other input sizes"}
    return None


def _gigabytes(size: float) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**28 else f"{size / 2**20:.1f} MB"
