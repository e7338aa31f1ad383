"""What a plugin author (and a user of a broken plugin) sees when a plugin goes wrong: one line naming the
plugin, its distribution and version; the traceback on request; the author's own frame inside pytest."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import traceback
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cqdkit import __version__
from cqdkit.cli import cli
from cqdkit.errors import PluginConflictError, PluginError, UnknownNameError
from cqdkit.plugin import Backbone, Degradation, DistillLoss, PluginManager, configure_autoload, hookimpl

ROOT = Path(__file__).resolve().parents[1]

MISSPELT_HOOK = """
from cqdkit.plugin import Degradation, hookimpl

@hookimpl
def cqdkit_degradation():  # the final "s" is missing
    yield Degradation(name="typo-deg", summary="never seen", factory=dict)
"""

WRONG_ARGUMENTS = """
from cqdkit.plugin import hookimpl

@hookimpl
def cqdkit_losses(config):  # hooks take no arguments
    return []
"""

FAILING_OP = """
from cqdkit.plugin import Degradation, hookimpl


class Occlude:
    def __call__(self, views, rng):
        raise ValueError("the square does not fit\\nsecond line of the message")


@hookimpl
def cqdkit_degradations():
    yield Degradation(name="occlude", summary="an op that fails", factory=Occlude)
"""


def one_dup(name: str) -> str:
    return f"""
from cqdkit.plugin import Degradation, hookimpl

@hookimpl
def cqdkit_degradations():
    yield Degradation(name="dup", summary="{name}'s dup", factory=dict)
"""


@pytest.fixture
def fresh_default_manager():
    """The process-wide manager is rebuilt (with entry points) for the test, and again after it."""
    configure_autoload(None)
    yield
    configure_autoload(None)


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


def squashed(text: str) -> str:
    """``text`` on one line (rich wraps long warnings at the console's width)."""
    return " ".join(text.split())


# -- a plugin with a misspelt hook or a hook with arguments -----------------------------------------


def test_version_works_and_lists_a_plugin_with_a_misspelt_or_wrong_hook(fake_distribution, fresh_default_manager):
    fake_distribution("cqdkit-typo", "0.3", {"typo": "typo_plugin"}, {"typo_plugin": MISSPELT_HOOK})
    fake_distribution("cqdkit-args", "1.1", {"args": "args_plugin"}, {"args_plugin": WRONG_ARGUMENTS})
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"cqdkit {__version__}"
    assert "Traceback" not in result.output
    assert re.search(r"typo \(cqdkit-typo 0\.3\).*'cqdkit_degradation'.*did you mean 'cqdkit_degradations'",
                     result.stderr)
    assert re.search(r"args \(cqdkit-args 1\.1\).*config", result.stderr)


def test_plugins_command_lists_everything_else_and_warns_about_the_broken_plugin(fake_distribution,
                                                                                   fresh_default_manager):
    fake_distribution("cqdkit-typo", "0.3", {"typo": "typo_plugin"}, {"typo_plugin": MISSPELT_HOOK})
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    assert "tps" in result.stdout and "typo-deg" not in result.stdout
    assert "warning:" in result.stderr and "cqdkit-typo 0.3" in squashed(result.stderr)
    assert "did you mean 'cqdkit_degradations'" in squashed(result.stderr)


def test_a_name_from_a_plugin_that_could_not_be_registered_points_at_it(fake_distribution):
    fake_distribution("cqdkit-typo", "0.3", {"typo": "typo_plugin"}, {"typo_plugin": MISSPELT_HOOK})
    manager = PluginManager(autoload=True)
    [failure] = manager.failures
    assert failure.plugin.dist == "cqdkit-typo" and not manager.pm.has_plugin("typo")
    with pytest.raises(UnknownNameError, match=r"typo-deg.*failed to load.*cqdkit-typo 0\.3"):
        manager.degradation("typo-deg")
    with pytest.raises(PluginError, match="did you mean 'cqdkit_degradations'"):  # registering by hand: raises
        PluginManager(autoload=False).register(sys.modules["typo_plugin"], name="typo")


# -- a name clash says how to get past it -----------------------------------------------------------


def test_a_name_clash_says_how_to_get_past_it(fake_distribution, fresh_default_manager):
    fake_distribution("cqdkit-one", "1.0", {"one": "one_plugin"}, {"one_plugin": one_dup("one")})
    fake_distribution("cqdkit-two", "2.0", {"two": "two_plugin"}, {"two_plugin": one_dup("two")})
    with pytest.raises(PluginConflictError) as info:
        PluginManager(autoload=True).degradation("dup")
    message = str(info.value)
    assert "one (cqdkit-one 1.0)" in message and "two (cqdkit-two 2.0)" in message
    assert "--no-plugins" in message and "pip uninstall cqdkit-one" in message and "pip uninstall cqdkit-two" in message
    result = invoke("list", "degradations")
    assert result.exit_code == 2 and "--no-plugins" in squashed(result.stderr)
    assert invoke("--no-plugins", "list", "degradations").exit_code == 0


def test_a_clash_with_a_built_in_names_only_the_installed_distribution(fake_distribution):
    fake_distribution("cqdkit-mytps", "0.1", {"mytps": "mytps_plugin"}, {"mytps_plugin": one_dup("x").replace(
        '"dup"', '"tps"')})
    with pytest.raises(PluginConflictError) as info:
        PluginManager(autoload=True).degradation("tps")
    message = str(info.value)
    assert "pip uninstall cqdkit-mytps" in message and "--no-plugins" in message
    assert "uninstall cqdkit.degradations" not in message
