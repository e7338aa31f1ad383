"""The typed objects that plugins return from their hooks.

A hook never registers anything by side effect: it *yields* these frozen dataclasses, and the plugin
manager collects, validates and checks them for conflicts. Every object has a ``name`` (what users type),
a one-line ``summary`` (what ``cqdkit plugins`` shows) and a ``factory`` that builds the real thing.
Factories import their heavy dependencies (torch, timm, OpenCV) when called, never at module import, so
that listing plugins stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")

#: The four kinds of things plugins provide, as spelled in ``cqdkit plugins --json``.
KINDS: tuple[str, ...] = ("degradation", "backbone", "loss", "dataset")


@dataclass(frozen=True, kw_only=True)
class PluginEntry:
    """What every plugin-provided object has: a name users type and a one-line summary."""

    name: str
    summary: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"{type(self).__name__} name {self.name!r} is invalid: expected lower-case letters, "
                "digits, '_', '.' or '-', starting with a letter or digit"
            )
        if not isinstance(self.summary, str) or not self.summary.strip() or "\n" in self.summary.strip():
            raise ValueError(f"{type(self).__name__} {self.name!r}: summary must be one non-empty line")


@dataclass(frozen=True, kw_only=True)
class Param:
    """One ``key=value`` parameter of a degradation, as written in a spec string.

    ``parse`` turns the text after ``=`` into a value (``int``, ``float``, ``str``, or your own
    function; raise ``ValueError`` for a bad value). ``choices`` restricts the parsed value.
    """

    name: str
    default: Any
    parse: Callable[[str], Any] = str
    help: str = ""
    choices: Sequence[Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Degradation(PluginEntry):
    """A way to make the low-quality view z (and where needed the high-quality view x) of a sample.

    ``factory(**params)`` returns a :class:`cqdkit.degradations.DegradationOp`; ``params`` declares every
    keyword the factory accepts, so spec strings are validated before anything heavy is imported.
    ``random`` says whether the output depends on the per-sample seed.
    """

    factory: Callable[..., Any]
    params: tuple[Param, ...] = ()
    random: bool = False


@dataclass(frozen=True, kw_only=True)
class Backbone(PluginEntry):
    """A named network architecture.

    ``factory(num_classes=..., in_chans=3, pretrained=False, **kwargs)`` returns a ``torch.nn.Module``
    mapping ``(N, in_chans, H, W)`` images to ``(N, num_classes)`` logits.
    """

    factory: Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class BackboneCatalog(PluginEntry):
    """A family of backbones too large to list up front (all of timm), resolved lazily by name.

    ``contains(name)`` answers whether the family has a model; ``list_names(pattern)`` lists the names
    matching a shell-style wildcard; ``factory(name, num_classes=..., in_chans=3, pretrained=False)`` builds
    one. Named :class:`Backbone` entries always take precedence over catalogs.
    """

    contains: Callable[[str], bool]
    list_names: Callable[[str], list[str]]
    factory: Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class DistillLoss(PluginEntry):
    """A distillation loss on logits, L2(g(z), f(x)) of Equation 1: the short way to write a logit loss.

    ``factory(temperature=T, **params)`` returns ``loss(student_logits, teacher_logits) -> scalar tensor``, the
    mean over the batch. A loss that also uses the ground-truth labels (decoupled KD splits the target class
    from the others) sets ``needs_labels`` and is called as ``loss(student_logits, teacher_logits, labels)``;
    an unlabelled sample's label is then the teacher's top class. ``params`` declares the loss's own
    keywords (``dkd:beta=4``); ``search`` the values ``--lambda auto`` tries (default :data:`LOGIT_SEARCH`).
    cqdkit runs it as a distillation term (:class:`cqdkit.losses.LogitTerm`).
    """

    factory: Callable[..., Any]
    needs_labels: bool = False
    params: tuple[Param, ...] = ()
    search: dict[str, tuple[Any, ...]] | None = None
    takes_temperature: bool = True  # False: the factory takes no T (logit-l2), and no spec or search sets one


@dataclass(frozen=True, kw_only=True)
class Distiller(PluginEntry):
    """A way of distilling: any term that compares the student with the teacher -- logits, intermediate
    features, relations between the samples of a batch -- and may own trainable parts.

    ``factory(context, **params)`` returns a :class:`cqdkit.losses.DistillTerm` (a ``torch.nn.Module``):
    ``context`` (:class:`cqdkit.losses.DistillContext`) names the layers of both networks and their output
    shapes, so the term can build its regressors or projection heads; ``params`` declares every keyword the
    factory accepts (``fitnet:student=features.6``). ``search`` maps parameter names (``lambda`` for the
    term's weight) to the values ``--lambda auto`` tries on validation (default: :data:`FEATURE_SEARCH`).
    """

    factory: Callable[..., Any]
    params: tuple[Param, ...] = ()
    search: dict[str, tuple[Any, ...]] | None = None


#: What ``--lambda auto`` tries for a logit loss without its own ``search`` (0 is always tried): three strengths
#: along a diagonal, the sharper softmax with the smaller weight (a dict sets several parameters at once).
LOGIT_SEARCH: dict[str, tuple[Any, ...]] = {"strength": ({"temperature": 2.0, "lambda": 5.0},
                                                         {"temperature": 4.0, "lambda": 50.0},
                                                         {"temperature": 10.0, "lambda": 500.0})}
#: What ``--lambda auto`` tries for a distiller without its own ``search`` (0 is always tried).
FEATURE_SEARCH: dict[str, tuple[Any, ...]] = {"lambda": (0.1, 1.0, 10.0)}


@dataclass(frozen=True, kw_only=True)
class DatasetSource(PluginEntry):
    """A labelled image dataset (CUB, Stanford Cars, an image folder, the embedded synthetic set).

    ``factory(root, *, skip_bad=False, **options)`` returns a :class:`cqdkit.data.ImageDataset`; with
    ``skip_bad`` it leaves bad samples out and lists them in ``problems`` instead of raising. ``options`` maps
    every option the factory accepts to its default. ``needs_root`` is False for datasets that need no path
    (the embedded synthetic one).
    """

    factory: Callable[..., Any]
    needs_root: bool = True
    options: dict[str, Any] = field(default_factory=dict)


#: Which entry types each kind's hook may yield.
ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "degradation": (Degradation,),
    "backbone": (Backbone, BackboneCatalog),
    "loss": (DistillLoss, Distiller),
    "dataset": (DatasetSource,),
}
