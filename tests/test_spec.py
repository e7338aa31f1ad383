"""Spec strings: parsing, validation errors, plugin lookup, upsampler registry."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqdkit.degradations import PairMaker, parse_spec, split_specs
from cqdkit.degradations import upsample
from cqdkit.errors import CqdkitError, SpecError, UnknownNameError
from cqdkit.plugin import Degradation, Param, PluginManager, hookimpl


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager(autoload=False)


def test_parse_fills_defaults_and_keeps_order(manager):
    assert parse_spec("lowres:size=32+jpeg:severity=3", manager) == [
        ("lowres", {"size": 32, "upsample": "bicubic", "weights": None}),
        ("jpeg", {"severity": 3}),
    ]
    assert parse_spec(" tps : sigma = 0.5 , grid=4 + gray ", manager) == [
        ("tps", {"grid": 4, "sigma": 0.5}),
        ("gray", {"severity": 5}),
    ]
    assert parse_spec("localization", manager) == [("localization", {})]


def test_default_manager_is_the_process_wide_one():
    assert parse_spec("blur")[0] == ("blur", {"severity": 3})


def test_unknown_name_suggests_close_matches(manager):
    with pytest.raises(UnknownNameError) as info:
        parse_spec("lowres+tsp", manager)
    assert info.value.matches == ["tps"]
    assert "did you mean 'tps'" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("lowres:sise=3", ["unknown parameter 'sise'", "size", "upsample", "weights"]),
        ("lowres:size=abc", ["'abc'", "'size'", "default 50"]),
        ("lowres:size=0", ["'size'", "at least 1"]),
        ("jpeg:severity=7", ["'severity'", "1, 2, 3, 4, 5"]),
        ("tps:sigma=-1", ["'sigma'", ">= 0"]),
        ("tps:sigma=nan", ["'sigma'"]),
        ("tps:grid=1", ["'grid'", "from 2 to 64"]),
        ("tps:grid=65", ["'grid'", "from 2 to 64"]),
        ("edges:detector=hed", ["'detector'", "auto, sed, gradient"]),
        ("lowres:upsample=bicubik", ["did you mean 'bicubic'", "nearest"]),
        ("lowres:size", ["expected key=value", "size"]),
        ("lowres:size=3,size=4", ["given twice"]),
        ("localization:size=3", ["localization takes no parameters"]),
        ("", ["expected a degradation spec"]),
        ("lowres+", ["empty degradation name"]),
        (":size=3", ["empty degradation name"]),
    ],
)
def test_bad_specs_say_what_is_allowed(manager, spec, fragments):
    with pytest.raises(SpecError) as info:
        parse_spec(spec, manager)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_spec_errors_are_cqdkit_and_value_errors(manager):
    with pytest.raises(ValueError):
        parse_spec("blur:severity=0", manager)
    with pytest.raises(CqdkitError):
        PairMaker(None, manager=manager)  # type: ignore[arg-type]


def test_op_that_sets_x_must_come_first(manager):
    PairMaker("localization+lowres", manager=manager)
    with pytest.raises(SpecError, match="must come first"):
        PairMaker("lowres+localization", manager=manager)


class _Invert:
    def __call__(self, views, rng):
        return views._replace(z=255 - views.z)


class _InvertPlugin:
    @hookimpl
    def cqdkit_degradations(self):
        yield Degradation(
            name="invert",
            summary="z = 255 - x",
            factory=lambda strength=1: _Invert(),
            params=(Param(name="strength", default=1, parse=int),),
        )


def test_third_party_degradations_work_in_specs():
    manager = PluginManager(autoload=False)
    manager.register(_InvertPlugin(), name="invert-plugin")
    assert parse_spec("invert:strength=2+gray", manager)[0] == ("invert", {"strength": 2})
    image = np.arange(30 * 20 * 3, dtype=np.uint8).reshape(30, 20, 3)
    x, z = PairMaker("invert", size=16, manager=manager)(image)
    assert np.array_equal(z, 255 - x)
    with pytest.raises(UnknownNameError):
        parse_spec("invert")  # the process-wide manager does not know it


def test_upsampler_registry_accepts_new_names_and_lazy_paths(manager, monkeypatch, tmp_path):
    calls = []

    def factory(weights=None):
        calls.append(weights)
        return upsample.InterpolationUpsampler("NEAREST")

    monkeypatch.setitem(upsample._REGISTRY, "blocky", factory)
    (tmp_path / "my_sr.py").write_text(
        "from cqdkit.degradations.upsample import InterpolationUpsampler\n"
        "def make(weights=None):\n    return InterpolationUpsampler('LINEAR')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(upsample._REGISTRY, "lazy", "my_sr:make")
    assert "blocky" in upsample.upsampler_names()
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x, z = PairMaker("lowres:size=8,upsample=blocky,weights=w.pth", size=64, manager=manager)(image)
    assert calls == ["w.pth"]
    assert np.array_equal(z[:8, :8], np.broadcast_to(z[0, 0], (8, 8, 3)))  # nearest: 8x8 blocks
    assert "my_sr" not in sys.modules
    assert upsample.make_upsampler("lazy") == upsample.InterpolationUpsampler("LINEAR")
    assert "my_sr" in sys.modules  # "module:attribute" is imported when first used


def test_interpolation_upsamplers_refuse_weights(manager):
    with pytest.raises(SpecError, match="takes no weights"):
        PairMaker("lowres:weights=model.pth", manager=manager)


_NAMES = st.sampled_from(["lowres", "tps", "edges", "jpeg", "my-op"])
_PARAMS = st.lists(
    st.tuples(st.sampled_from(["size", "upsample", "weights", "severity"]),
              st.sampled_from(["16", "srcnn", "sr.safetensors", "dir/w.pth", "3"])),
    max_size=3,
)
_OP = st.builds(lambda name, params: name + (":" + ",".join(f"{k}={v}" for k, v in params) if params else ""),
                _NAMES, _PARAMS)
_SPEC = st.lists(_OP, min_size=1, max_size=3).map("+".join)


@given(st.lists(_SPEC, min_size=1, max_size=4, unique=True))  # a repeated spec is refused (issue #25)
def test_split_specs_inverts_joining_with_commas(specs):
    assert split_specs(",".join(specs)) == specs


def test_split_specs_keeps_parameter_commas_together():
    assert split_specs("lowres:size=16,upsample=srcnn,weights=sr.safetensors, tps,,edges") == [
        "lowres:size=16,upsample=srcnn,weights=sr.safetensors", "tps", "edges"]
