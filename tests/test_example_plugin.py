"""The separately installable example plugin in plugins/cqdkit-sepia: discovered, listed, conformant."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.errors import SpecError
from cqdkit.plugin import PluginManager
from cqdkit.testing import check_degradation



@pytest.fixture
def sepia_installed(plugin_package):
    """The plugin as an installed distribution (see the ``plugin_package`` fixture)."""
    plugin_package("cqdkit-sepia", {"sepia": "cqdkit_sepia"})


def test_example_plugin_is_listed_by_cqdkit_plugins(sepia_installed):
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.stdout) if r["name"] == "sepia"]
    assert row["kind"] == "degradation" and row["plugin"] == "cqdkit-sepia" and not row["builtin"]


def test_example_plugin_passes_the_conformance_check(sepia_installed):
    manager = PluginManager(autoload=True)
    check_degradation("sepia", manager=manager)
    check_degradation("sepia:strength=0.3", manager=manager)


def test_example_plugin_works_in_a_spec(sepia_installed):
    from cqdkit.degradations import PairMaker

    manager = PluginManager(autoload=True)
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 2] = 200  # pure blue
    x, z = PairMaker("sepia", size=16, manager=manager)(image)
    assert (x[..., 2] == 200).all() and (x[..., 0] == 0).all()
    # sepia of pure blue (0, 0, 200): R = 0.189 * 200, G = 0.168 * 200, B = 0.131 * 200
    np.testing.assert_allclose(z[0, 0], [38, 34, 26], atol=1)
    x2, z2 = PairMaker("sepia:strength=0", size=16, manager=manager)(image)
    np.testing.assert_array_equal(z2, x2)
    with pytest.raises(SpecError, match="bad value .2. for .strength."):
        PairMaker("sepia:strength=2", size=16, manager=manager)
