"""The command line: plugins listing, --version, --no-plugins, error display, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from cqdkit.cli import cli
from cqdkit.errors import CqdkitError
from cqdkit.plugin import Degradation, configure_autoload, hookimpl

from .test_plugin_system import GOOD_PLUGIN


@pytest.fixture
def runner():
    yield CliRunner()
    configure_autoload(None)  # --no-plugins changes the process-wide default


def test_plugins_json_lists_every_kind_with_its_plugin(runner, fake_distribution):
    fake_distribution("cqdkit-fake", "1.0", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    configure_autoload(None)
    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all({"kind", "name", "plugin", "summary"} <= set(row) for row in rows)
    assert all(row["kind"] in {"degradation", "backbone", "loss", "dataset"} for row in rows)
    fake = [row for row in rows if row["name"] == "fake-blur"]
    assert fake == [fake[0]] and fake[0]["plugin"] == "cqdkit-fake" and fake[0]["kind"] == "degradation"


def test_no_plugins_flag_loads_builtins_only(runner, fake_distribution):
    fake_distribution("cqdkit-fake", "1.0", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    result = runner.invoke(cli, ["--no-plugins", "plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert "fake-blur" not in {row["name"] for row in json.loads(result.stdout)}


def test_version_lists_third_party_plugins(runner, fake_distribution):
    fake_distribution("cqdkit-fake", "4.5.6", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    configure_autoload(None)
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("cqdkit ")
    assert "cqdkit-fake 4.5.6" in result.stdout


def test_broken_plugin_is_a_warning_not_a_crash(runner, fake_distribution):
    fake_distribution("cqdkit-broken", "0.1", {"broken": "broken_plugin"}, {"broken_plugin": "import nope"})
    configure_autoload(None)
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "cqdkit-broken 0.1" in result.stderr and "failed to import" in result.stderr


def test_expected_errors_are_one_line_without_traceback(runner, register_plugin, tmp_path):
    def failing_factory(**kwargs):
        raise CqdkitError("the value 7 is not allowed here")

    class Plugin:
        @hookimpl
        def cqdkit_degradations(self):
            yield Degradation(name="fails-a", summary="one", factory=failing_factory)

    register_plugin(Plugin(), name="failing")
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    result = runner.invoke(cli, ["degrade", "fails-a", str(image), "--out", str(tmp_path / "out"), "--size", "8"])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "the value 7 is not allowed here" in result.stderr
    assert "Traceback" not in result.output


def test_list_backbones_uses_wildcards(runner, register_plugin):
    from cqdkit.plugin import Backbone

    class Plugin:
        @hookimpl
        def cqdkit_backbones(self):
            yield Backbone(name="tiny-a", summary="a", factory=dict)
            yield Backbone(name="tiny-b", summary="b", factory=dict)
            yield Backbone(name="large", summary="c", factory=dict)

    register_plugin(Plugin(), name="tiny")
    result = runner.invoke(cli, ["list", "backbones", "tiny-*"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names[:2] == ["tiny-a", "tiny-b"] and "large" not in names


@pytest.mark.parametrize(
    "code",
    [
        "import cqdkit",
        "from cqdkit.cli import cli; cli.main(['--help'], standalone_mode=False)",
        "from cqdkit.cli import cli; cli.main(['plugins'], standalone_mode=False)",
    ],
    ids=["import", "help", "plugins"],
)
def test_startup_does_not_import_torch_or_timm(code):
    check = code + "\nimport sys; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout.strip().splitlines()[-1]
    assert output == "[]"
