"""The reusable conformance check, applied to every registered built-in degradation, and its teeth."""

from __future__ import annotations

import numpy as np
import pytest

from cqdkit.plugin import Degradation, PluginManager, hookimpl
from cqdkit.testing.degradations import check_degradation

MANAGER = PluginManager(autoload=False)


@pytest.fixture(autouse=True)
def no_sed_model(monkeypatch):
    monkeypatch.delenv("CQDKIT_SED_MODEL", raising=False)


@pytest.mark.parametrize("name", [entry.name for entry in MANAGER.entries("degradation")])
def test_builtin_degradation_conforms(name):
    check_degradation(name, manager=MANAGER, max_examples=15)


COMPOSITIONS = ["localization+lowres:size=20+tps", "edges+noise:severity=1", "jpeg+pixelate"]


@pytest.mark.parametrize("spec", COMPOSITIONS)
def test_compositions_conform(spec):
    check_degradation(spec, manager=MANAGER, max_examples=8)


class _ChangesX:
    def __call__(self, views, rng):
        return views._replace(x=views.x[::-1].copy())


class _SeedlessNoise:
    def __call__(self, views, rng):
        noise = np.random.randint(0, 2, views.z.shape, dtype=np.uint8)
        return views._replace(z=views.z ^ noise)


class _InPlace:
    def __call__(self, views, rng):
        views.source[0, 0] = 0
        return views


class _UndeclaredRandom:
    def __call__(self, views, rng):
        return views._replace(z=views.z ^ rng.integers(0, 2, views.z.shape, dtype=np.uint8))


class _BadOps:
    @hookimpl
    def cqdkit_degradations(self):
        yield Degradation(name="changes-x", summary="flips x", factory=_ChangesX)
        yield Degradation(name="seedless", summary="global noise", factory=_SeedlessNoise, random=True)
        yield Degradation(name="in-place", summary="writes into its input", factory=_InPlace)
        yield Degradation(name="undeclared", summary="random but says not", factory=_UndeclaredRandom)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("changes-x", "x is not the plain stretched source/crop"),
        ("seedless", "same seed, different pair"),
        ("in-place", "modified the input image"),
        ("undeclared", "declared not random"),
    ],
)
def test_check_catches_broken_degradations(name, message):
    manager = PluginManager(autoload=False)
    manager.register(_BadOps(), name="bad-ops")
    with pytest.raises(AssertionError, match=message):
        check_degradation(name, manager=manager, max_examples=5)
