"""Everything that defines a run, in one JSON-able dataclass.

Defaults follow the paper (Su and Maji, section 2, "Optimization details"): SGD with momentum 0.9, weight
decay 5e-4, learning rate linear from 1e-3 to 5e-5 over 30 epochs, batch 128, T = 10 in both softmaxes with
no T^2 factor, lambda = 200 (the CUB value; the paper used 50 for Stanford Cars), images stretched to
224x224. Those numbers assume ImageNet-pretrained networks fine-tuned on a GPU.

The embedded synthetic dataset gets CPU-sized defaults instead (:data:`CPU_PROFILE`): a small network,
small inputs, fewer epochs and a larger learning rate, because its models train from scratch on two CPU
cores in minutes.
Anything given explicitly wins over both profiles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Optimization
    from .hardware import Hardware

from ..errors import CqdkitError, SpecError
from ..images import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from ..losses.spec import AUTO as STRENGTH_AUTO
from ..losses.spec import check_lambdas, check_temperature
from .methods import AUTO, METHODS

#: ``--clip-grad-norm auto``: a bound chosen per network (:func:`cqdkit.train.engine.gradient_clip`).
CLIP_AUTO = "auto"
#: ``--init``: how a network that starts from a random init is initialised. ``random``: its own init (timm's);
#: ``lsuv``: LSUV on a batch of training images (:mod:`cqdkit.models.lsuv`); ``auto``: LSUV for the deep networks
#: without normalisation layers (:func:`cqdkit.train.engine.uses_lsuv`), their own init for the others.
INITS = ("auto", "lsuv", "random")

#: The paper's protocol (ImageNet-pretrained vgg-m / vgg16 on CUB or Cars). T and lambda are the paper's own on
#: its own data (:data:`PAPER_STRENGTH`) and chosen on the validation split everywhere else (``auto``).
PAPER_PROFILE: dict[str, Any] = {
    "teacher": "vggm",
    "student": "vggm",
    "image_size": 224,
    "epochs": 30,
    "batch_size": 128,
    "lr": 1e-3,
    "lr_end": 5e-5,
    "temperature": STRENGTH_AUTO,
    "lam": STRENGTH_AUTO,
    "pretrained": True,
    "clip_grad_norm": 0.0,
    "init": "random",
    "loss": "softce",
}

#: T and lambda the paper found on the validation sets of its datasets (section 2, "Optimization details").
PAPER_STRENGTH: dict[str, dict[str, float]] = {
    "cub": {"temperature": 10.0, "lam": 200.0},
    "cars": {"temperature": 10.0, "lam": 50.0},
}

#: The embedded synthetic benchmark on a 2-core CPU: models trained from scratch at small inputs.
#: T and lambda are chosen per task on the validation split (``auto``, :mod:`cqdkit.train.strength`): the full
#: ``cqdkit tune`` grid found a different best cell on each degradation, lambda = 0 on two of four
#: (docs/results.md), so no fixed value serves them all.
#: ``budget``: ``cqdkit run`` trains at a smaller input size when its estimate at 64 px is over 12 minutes
#: (larger networks than convnet-s on a laptop CPU, such as vgg16 -> vggm), so that it ends within 15.
CPU_PROFILE: dict[str, Any] = {
    "teacher": "convnet-s",
    "student": "convnet-s",
    "image_size": 64,
    "epochs": 8,
    "batch_size": 32,
    "lr": 1e-2,
    "lr_end": 5e-4,
    "temperature": STRENGTH_AUTO,
    "lam": STRENGTH_AUTO,
    "pretrained": False,
    "budget": 12.0,
    "clip_grad_norm": CLIP_AUTO,
    "init": "auto",
    # the paper's soft CE and a relational term, each kept or dropped on validation: in the comparison of ten
    # terms (docs/results.md) validation kept rkd in 9 of 12 (degradation, seed) cells, softce in 4. A strength
    # given with --lambda or --tuned means softce alone (see resolved)
    "loss": "softce+rkd",
}


def profile_defaults(profile: str, dataset: str) -> dict[str, Any]:
    """The defaults of ``profile`` (``"paper"`` or ``"cpu"``) for ``dataset``: the paper's T = 10 and lambda 200 on
    CUB, 50 on Stanford Cars (:data:`PAPER_STRENGTH`); ``auto`` (chosen on validation) elsewhere."""
    if profile == "paper":
        return {**PAPER_PROFILE, **PAPER_STRENGTH.get(dataset, {})}
    if profile == "cpu":
        return dict(CPU_PROFILE)
    raise CqdkitError(f"unknown profile {profile!r}; expected 'paper', 'cpu' or 'auto'")


def option(name: str, default: Any = None, **kwargs: Any) -> Any:
    """A RunConfig field whose command-line option is ``name`` (when it is not ``--field-name``)."""
    if "default_factory" not in kwargs:
        kwargs["default"] = default
    return field(metadata={"option": name}, **kwargs)


#: Seeds go to numpy's, torch's and Python's generators; 32 bits is what all of them take whole.
MAX_SEED = 2**32
#: The largest batch, epochs and DataLoader workers accepted: far beyond any real run, refused before allocating.
MAX_BATCH_SIZE = 65536
MAX_EPOCHS = 100_000
MAX_WORKERS = 1024
#: The most seeds a table, tune or comparison runs (each seed is a whole set of trainings).
MAX_SEEDS = 1000
#: A batch's x and z views (float32) may take at most this share of the machine's memory.
BATCH_MEMORY_SHARE = 0.5


def machine_memory() -> int | None:
    """The machine's physical memory in bytes (None where the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_type(name: str, value: Any, annotation: Any, where: str, *, finite: bool = True) -> Any:
    """``value`` if it has the type of a setting annotated ``annotation`` (``bool``, ``int``, ``float``, ``str``,
    ``dict``, ``list[float]``, unions of them, ``| None``); an ``int`` is a ``float`` too, never a ``bool``, and
    a float must be finite unless ``finite`` is off (a range check names it better). ``where`` says where the
    value came from, for the error.

    Raises:
        CqdkitError: ``<where>: <name> must be <expected>, got <value>``.
    """
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value) or not finite:
                return float(value) if isinstance(value, int) else value
            continue
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is list and isinstance(value, list) and all(isinstance(item, (int, float)) and not isinstance(
                item, bool) and (math.isfinite(item) or not finite) for item in value):
            return [float(item) for item in value]
        if origin is dict and isinstance(value, dict) and all(
                isinstance(item, (str, int, float, bool)) for item in value.values()):
            return value
        if origin in (bool, str, type(None)) and isinstance(value, origin):
            return value
    raise CqdkitError(f"{where}: {name} must be {describe_type(annotation)}, got {value!r}")


def describe_type(annotation: Any) -> str:
    """What a setting annotated ``annotation`` takes, in words: ``int | None`` -> "an integer or null (unset)"."""
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return " or ".join(_EXPECTED.get(typing.get_origin(kind) or kind, str(kind)) for kind in kinds)


#: How an error names what a setting's type expects.
_EXPECTED = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             dict: "a table of names to plain values", list: "a list of finite numbers", type(None): "null (unset)"}


@dataclass
class RunConfig:
    """A whole CQD run: data, degradation, models, method, optimisation and where to write.

    ``None`` for a profile field (teacher, student, image_size, epochs, batch_size, lr, lr_end, temperature,
    lam, pretrained, budget, clip_grad_norm, init, loss) means "use the profile's value" -- see :meth:`resolved`.
    Each field is the command-line option of the same name (``lam`` is ``--lambda``; see :meth:`option_name`).
    """

    degrade: str = "tps"
    teacher: str | None = None  # None: the profile's (vggm for the paper, convnet-s on the CPU)
    student: str | None = None
    method: str = AUTO  # "auto": a-cqd when the student can start from the teacher, else cqd
    loss: str | None = None  # None: the profile's (paper: softce; cpu: softce+rkd)
    dataset: str = "synthetic"
    root: str | None = None
    dataset_options: dict[str, Any] = option("--dataset-option", default_factory=dict)
    skip_bad: bool = False
    crop: bool | None = None  # x is the box crop (the paper's "localized" images); None: when boxes exist
    augment: bool = False  # paired random geometry, applied to x and z alike
    fixed_train_z: bool = option("--redraw-z", True)  # the paper: one z per training image
    val_fraction: float = 0.1
    label_fraction: float = 1.0  # keep this share of each class's training labels; the rest become unlabelled
    unlabeled: str | None = None  # a folder of unlabelled images (no classes) for the distillation terms
    distill_unlabeled: bool = True  # distilled students also train on the unlabelled images (distillation only)
    folds: int = 0  # k-fold validation over the training split (0: hold out val_fraction instead)
    fold: int = 0  # which fold is the validation split when folds > 0
    image_size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_end: float | None = None
    # networks without normalisation layers: a bound, 0 (off) or "auto" (deep ones at 1); None: the profile's
    clip_grad_norm: float | str | None = None
    init: str | None = None  # a random start: "auto" (LSUV for deep plain networks), "lsuv" or "random"; None: profile's
    momentum: float = 0.9
    weight_decay: float = 5e-4
    temperature: float | str | None = None  # "auto": chosen per term on the validation split
    lam: float | list[float] | str | None = option("--lambda")  # one weight, one per loss term, or "auto"
    pretrained: bool | None = None  # None: the profile's (ImageNet weights for the paper, none on the CPU)
    teacher_weights: str | None = None
    student_weights: str | None = None
    seed: int = 0
    student_seed: int | None = None  # the students' initialisation and data order (None: --seed); split, z, A unchanged
    tuned: str | None = None  # a tune.json whose chosen T and lambda the distilled method takes
    device: str = "auto"
    amp: bool = option("--no-amp", True)  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False
    workers: int = 0
    cache_teacher: bool = True
    feature_cache_gb: float = 8.0  # the teacher's features are cached up to this size (and half the free disk)
    baseline: bool = option("--no-baseline", True)  # run also trains B, to show what distillation gave
    budget: float | None = None  # minutes of training `cqdkit run` fits the input size into (None: no limit)
    tensorboard: bool = False  # also write TensorBoard event files into <out>/tensorboard
    profile: str = "auto"  # "paper", "cpu", or "auto" (cpu for the synthetic dataset)
    out: str | None = None

    @staticmethod
    def option_name(name: str) -> str:
        """The command-line option of field ``name``: ``"lam"`` -> ``"--lambda"``."""
        metadata = {f.name: f.metadata for f in dataclasses.fields(RunConfig)}
        return metadata[name].get("option", "--" + name.replace("_", "-"))

    def profile_values(self) -> dict[str, Any]:
        """The defaults of this config's profile (``auto``: cpu for the synthetic dataset, else paper)."""
        profile = self.profile
        if profile == "auto":
            profile = "cpu" if self.dataset == "synthetic" else "paper"
        return profile_defaults(profile, self.dataset)

    def resolved(self) -> RunConfig:
        """A copy with every ``None`` profile field filled in; validates.

        The method stays as given (``auto`` included): which method ``auto`` means depends on x's
        channels too, which the experiment knows (:func:`cqdkit.train.methods.resolve`).
        """
        values = dataclasses.asdict(self)
        if values["loss"] is None and (values["tuned"] or values["lam"] not in (None, STRENGTH_AUTO)):
            values["loss"] = "softce"  # a strength given (--lambda, --tuned) is the paper's loss's
        for key, default in self.profile_values().items():
            if values[key] is None:
                values[key] = default
        config = RunConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check every setting that needs no plugin or dataset (those are checked by the experiment).

        Raises:
            CqdkitError: a value out of range, named by its command-line option.
        """
        hints = typing.get_type_hints(RunConfig)
        for setting in dataclasses.fields(self):
            if setting.name == "clip_grad_norm":
                continue  # its own check below says what it takes
            check_type(self.option_name(setting.name), getattr(self, setting.name), hints[setting.name], "settings",
                       finite=False)  # the ranges below name a non-finite number with its limits
        if self.method != AUTO and self.method not in METHODS:
            raise CqdkitError(f"unknown method {self.method!r}; expected one of {AUTO}, {', '.join(METHODS)}")
        if self.method != AUTO and self.teacher is not None and self.student is not None:
            METHODS[self.method].check(teacher=self.teacher, student=self.student)
        minimum = {"epochs": 1, "batch_size": 1, "image_size": MIN_IMAGE_SIZE, "workers": 0, "seed": 0}
        for name, least in minimum.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise CqdkitError(f"{self.option_name(name)} must be at least {least}, got {value}")
        maximum = {"epochs": MAX_EPOCHS, "batch_size": MAX_BATCH_SIZE, "image_size": MAX_IMAGE_SIZE,
                   "workers": MAX_WORKERS}
        for name, most in maximum.items():
            value = getattr(self, name)
            if value is not None and value > most:
                raise CqdkitError(f"{self.option_name(name)} must be at most {most}, got {value}")
        self._check_batch_memory()
        for name in ("seed", "student_seed"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < MAX_SEED:
                raise CqdkitError(f"{self.option_name(name)} must be in [0, 2**32) (a random generator's seed), "
                                  f"got {value}")
        for name, check in (("temperature", check_temperature), ("lam", check_lambdas)):
            value = getattr(self, name)
            if value is not None:
                try:
                    check(value)
                except SpecError as error:
                    raise CqdkitError(str(error)) from None
        ranges = {
            "lr": (self.lr, "a finite number > 0", lambda v: v > 0),
            "lr_end": (self.lr_end, "a finite number >= 0", lambda v: v >= 0),
            "budget": (self.budget, "a finite number of minutes > 0", lambda v: v > 0),
            "feature_cache_gb": (self.feature_cache_gb, "a finite number of gigabytes >= 0", lambda v: v >= 0),
            "clip_grad_norm": (None if self.clip_grad_norm == CLIP_AUTO else self.clip_grad_norm,
                               "a finite number >= 0 (0: off) or 'auto'", lambda v: v >= 0),
            "momentum": (self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1),
            "weight_decay": (self.weight_decay, "a finite number >= 0", lambda v: v >= 0),
            "val_fraction": (self.val_fraction, "a number in [0, 1)", lambda v: 0 <= v < 1),
            "label_fraction": (self.label_fraction, "a number in (0, 1]", lambda v: 0 < v <= 1),
        }
        if self.init is not None and self.init not in INITS:
            raise CqdkitError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        clip = self.clip_grad_norm
        if isinstance(clip, bool) or not (clip is None or clip == CLIP_AUTO or isinstance(clip, (int, float))):
            raise CqdkitError(f"--clip-grad-norm must be a finite number >= 0 (0: off) or 'auto', got {clip!r}")
        for name, (value, expected, valid) in ranges.items():
            if value is not None and not (math.isfinite(value) and valid(value)):
                raise CqdkitError(f"{self.option_name(name)} must be {expected}, got {value}")
        if self.folds == 1 or self.folds < 0 or not 0 <= self.fold < max(self.folds, 1):
            raise CqdkitError(f"fold {self.fold} of {self.folds} folds; expected --folds 0 (a held-out fraction) "
                              "or at least 2, and 0 <= fold < folds")
        self.hardware()  # the device exists

    def _check_batch_memory(self) -> None:
        """Refuse a batch whose x and z views alone (float32) would take more than :data:`BATCH_MEMORY_SHARE` of
        the machine's memory, before anything is allocated."""
        memory = machine_memory()
        if not (memory and self.batch_size and self.image_size):
            return
        needed = 2 * self.batch_size * 3 * self.image_size**2 * 4
        if needed > BATCH_MEMORY_SHARE * memory:
            raise CqdkitError(
                f"--batch-size {self.batch_size} at --image-size {self.image_size}: one batch of x and z views takes "
                f"{needed / 2**30:.1f} GiB, more than {BATCH_MEMORY_SHARE:.0%} of this machine's "
                f"{memory / 2**30:.0f} GiB; lower --batch-size or --image-size")

    def optimization(self) -> Optimization:
        """The SGD settings of this (resolved) config."""
        from .engine import Optimization

        return Optimization(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, lr_end=self.lr_end,
                            momentum=self.momentum, weight_decay=self.weight_decay, seed=self.seed,
                            clip_grad_norm=None if self.clip_grad_norm == CLIP_AUTO else float(self.clip_grad_norm or 0))

    def hardware(self) -> Hardware:
        """Where and how this config computes (``device`` resolved: ``auto`` picks CUDA when present)."""
        from .hardware import Hardware, resolve_device

        return Hardware(device=resolve_device(self.device), amp=self.amp, channels_last=self.channels_last,
                        compile=self.compile, workers=self.workers)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise CqdkitError(f"unknown run-config keys {unknown}; known: {sorted(known)}")
        return cls(**payload)

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        from ..files import read_regular_text

        try:
            payload = json.loads(read_regular_text(path, "a run's config.json"))
        except (OSError, ValueError) as error:
            raise CqdkitError(f"cannot read run config {path}: {error}") from error
        return cls.from_json(payload.get("run", payload))
