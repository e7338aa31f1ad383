"""Loss spec strings: which distillation terms a run adds to the cross-entropy, with their parameters.

``--loss`` takes the degradation spec grammar (:mod:`cqdkit.plugin.params`): terms joined with ``+``, each
``NAME[:key=value,...]``. Every term takes ``lambda`` (its weight in Equation 1); a logit loss also takes
``temperature``; the rest are the term's own declared parameters::

    >>> [term.text() for term in parse_loss("softce:temperature=4,lambda=50+fitnet:student=-2")]
    ['softce:temperature=4,lambda=50', 'fitnet:student=-2']

A value a spec leaves out comes from the run: ``--lambda`` (one value for every term, or one per term:
``--lambda 200,50``) and ``--temperature`` (every logit loss), or, with ``auto``, from the search on the
validation split (:mod:`cqdkit.train.strength`). This module imports only the standard library and
cqdkit's plugin core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..plugin.params import at_most, given_keys, non_negative_float, parse_params, positive_float, split_parts
from ..plugin.types import FEATURE_SEARCH, LOGIT_SEARCH, DistillLoss, Param

if TYPE_CHECKING:
    from ..plugin import Distiller, PluginManager

LAMBDA, TEMPERATURE = "lambda", "temperature"
#: ``auto`` for ``--lambda`` / ``--temperature``: chosen on the validation split.
AUTO = "auto"

#: The largest distillation weight accepted: the paper's largest is 200; far beyond, the loss overflows.
MAX_LAMBDA = 1e6
#: The largest temperature accepted: the paper's is 10; at 1000 every softened distribution is already flat.
MAX_TEMPERATURE = 1000.0


_LAMBDA = Param(name=LAMBDA, default=None, parse=at_most(non_negative_float, MAX_LAMBDA),
                help=f"the term's weight (a number from 0 to {MAX_LAMBDA:g})")
_TEMPERATURE = Param(name=TEMPERATURE, default=None, parse=at_most(positive_float, MAX_TEMPERATURE),
                     help=f"T of both softmaxes (a number > 0, at most {MAX_TEMPERATURE:g})")


@dataclass(frozen=True)
class TermSpec:
    """One term of a loss spec: its plugin entry's name, its parameters, its weight.

    ``params`` holds every declared parameter (defaults filled in; the ``temperature`` of a logit loss that takes
    one is None until the run's is applied); ``weight`` is None until the run's ``--lambda`` is applied.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    weight: float | None = None
    logit: bool = False  # a DistillLoss (takes a temperature), not a Distiller
    given: frozenset[str] = frozenset()  # the parameters the spec wrote out (lambda included); the rest are defaults

    @property
    def temperature(self) -> float | None:
        """The softmax temperature of a logit loss (None for a term without one, or until the run's applies)."""
        return self.params.get(TEMPERATURE)

    @property
    def tempered(self) -> bool:
        """Whether the term takes a temperature."""
        return TEMPERATURE in self.params

    def text(self) -> str:
        """The spec text of this term, every parameter written out: ``softce:temperature=4,lambda=50``."""
        values = [f"{key}={_text(value)}" for key, value in self.params.items() if value is not None and value != ""]
        if self.weight is not None:
            values.append(f"{LAMBDA}={_text(self.weight)}")
        return self.name + (":" + ",".join(values) if values else "")

    def complete(self) -> bool:
        """Whether the weight (and the temperature of a term that takes one) are set."""
        return self.weight is not None and (not self.tempered or self.temperature is not None)


def parse_loss(spec: str, manager: PluginManager | None = None) -> list[TermSpec]:
    """The terms of a loss spec, each checked against its entry's declared parameters.

    Raises:
        UnknownNameError: a term no plugin provides (with the closest names).
        SpecError: an empty spec or term, an unknown or repeated key, a bad value.
    """
    if manager is None:
        from ..plugin import get_plugin_manager

        manager = get_plugin_manager()
    terms = []
    for name, params_text in split_parts(spec, "loss"):
        entry = manager.loss(name)
        declared = entry_params(entry)
        values = parse_params(entry.name, (*declared, _LAMBDA), params_text)
        weight = values.pop(LAMBDA)
        terms.append(TermSpec(entry.name, values, weight, logit=isinstance(entry, DistillLoss),
                              given=given_keys(params_text)))
    return terms


def entry_params(entry: DistillLoss | Distiller) -> tuple[Param, ...]:
    """The parameters a term of ``entry`` takes besides ``lambda``: a logit loss's ``temperature`` first."""
    if isinstance(entry, DistillLoss) and entry.takes_temperature:
        return (_TEMPERATURE, *entry.params)
    return tuple(entry.params)


def search_space(entry: DistillLoss | Distiller) -> dict[str, tuple[Any, ...]]:
    """What ``--lambda auto`` tries for a term of ``entry``: its declared ``search``, else the default of its
    kind (:data:`~cqdkit.plugin.types.LOGIT_SEARCH`, :data:`~cqdkit.plugin.types.FEATURE_SEARCH`)."""
    if entry.search is not None:
        return dict(entry.search)
    return dict(LOGIT_SEARCH if isinstance(entry, DistillLoss) else FEATURE_SEARCH)


def apply_run_values(terms: Sequence[TermSpec], lam: float | Sequence[float] | None,
                     temperature: float | None) -> list[TermSpec]:
    """``terms`` with the run's ``--lambda`` and ``--temperature`` filled in where the spec left them out.

    ``lam`` is one weight for every term or one per term, in order; None leaves weights unset (``auto``).

    Raises:
        SpecError: a list of weights whose length is not the number of terms.
    """
    weights: list[float | None]
    if lam is None or isinstance(lam, (int, float)):
        weights = [None if lam is None else float(lam)] * len(terms)
    else:
        weights = [float(value) for value in lam]
        if len(weights) != len(terms):
            names = " + ".join(term.name for term in terms)
            raise SpecError(f"--lambda gives {len(weights)} weights for the {len(terms)} terms of --loss ({names}); "
                            "expected one weight, or one per term")
    filled = []
    for term, weight in zip(terms, weights):
        params = dict(term.params)
        if term.tempered and params[TEMPERATURE] is None and temperature is not None:
            params[TEMPERATURE] = float(temperature)
        filled.append(replace(term, params=params, weight=term.weight if term.weight is not None else weight))
    return filled


def loss_text(terms: Sequence[TermSpec]) -> str:
    """A loss spec that parses back to ``terms``: ``softce:temperature=10,lambda=20+fitnet:...``."""
    return "+".join(term.text() for term in terms)


def check_lambdas(text: Any) -> float | list[float] | str:
    """``--lambda``'s value: ``auto``, one number >= 0, or comma-separated numbers >= 0 (one per term; a list of
    numbers from a config file too).

    Raises:
        SpecError: anything else (named by the option).
    """
    if isinstance(text, (list, tuple)):
        text = ",".join(str(value) for value in text)
    text = str(text).strip()
    if text.lower() == AUTO:
        return AUTO
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SpecError(f"--lambda {text!r}: expected 'auto', a number >= 0, or one number per loss term "
                        "(e.g. 200,50)") from None
    if not all(math.isfinite(value) and 0 <= value <= MAX_LAMBDA for value in values):
        raise SpecError(f"--lambda {text!r}: every weight must be a number from 0 to {MAX_LAMBDA:g}")
    return values[0] if len(values) == 1 else values


def check_temperature(text: Any) -> float | str:
    """``--temperature``'s value: ``auto`` or a finite number > 0.

    Raises:
        SpecError: anything else (named by the option).
    """
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SpecError(f"--temperature {text!r}: expected 'auto' or a number > 0") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TEMPERATURE):
        raise SpecError(f"--temperature {text!r}: expected 'auto' or a number > 0, at most {MAX_TEMPERATURE:g}")
    return value


def _text(value: Any) -> str:
    """A parameter's value as spec text that parses back to it: ``20`` for 20.0, ``0.1234567`` whole, ``1e06``
    for a million (no ``+``, which joins the terms of a spec)."""
    if isinstance(value, float):
        short = f"{value:g}"
        return (short if float(short) == value else repr(value)).replace("e+", "e")
    return "" if value is None else str(value)
