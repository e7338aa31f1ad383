"""The public API in cqdkit/__init__.py: every advertised name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cqdkit


@pytest.mark.parametrize("name", cqdkit.__all__)
def test_every_public_name_resolves(name):
    assert getattr(cqdkit, name) is not None
    assert name in dir(cqdkit)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cqdkit.nope  # noqa: B018


def test_make_pair_contract():
    image = np.random.default_rng(0).integers(0, 65535, (30, 41), dtype=np.uint16)  # 16-bit gray
    x, z = cqdkit.make_pair("lowres:size=32", image, size=24, seed=3)
    assert x.shape == z.shape == (24, 24, 3) and x.dtype == z.dtype == np.uint8
    x2, z2 = cqdkit.make_pair("tps", image, bbox=(2, 3, 20, 20), size=24, seed=3)
    x3, z3 = cqdkit.make_pair("tps", image, bbox=(2, 3, 20, 20), size=24, seed=3)
    np.testing.assert_array_equal(z2, z3)


def test_heavy_names_load_on_first_use_only():
    code = "import sys, cqdkit; assert 'torch' not in sys.modules; cqdkit.create_backbone; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
