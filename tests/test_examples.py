"""The scripts in examples/ run at tiny sizes and print what they promise (CI runs them this way)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from cqdkit.plugin import PluginManager, configure_autoload

from .run_checks import recomputed_accuracy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ACCURACY = r"test accuracy on x +(\d+\.\d)%, on z +(\d+\.\d)%"


@pytest.fixture
def run_example(tmp_path_factory):
    """``run_example(script, *args, **environment) -> stdout``: a fresh Python with a private cache."""
    cache = tmp_path_factory.getbasetemp() / "examples-cache"  # one synthetic dataset for every example

    def run(script: Path, *args: str, **env_vars: str) -> str:
        env = {**os.environ, "CQDKIT_CACHE": str(cache), "CQDKIT_DISABLE_PLUGIN_AUTOLOAD": "1", **env_vars}
        result = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    return run


def test_api_end_to_end_trains_and_evaluates_a_teacher_and_students(run_example, tmp_path, tmp_path_factory,
                                                                     monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "examples-cache"))  # the example's data
    out = tmp_path / "api"
    stdout = run_example(EXAMPLES / "api_end_to_end.py", "--out", str(out), CQDKIT_EXAMPLE_SIZE="tiny")
    assert "3 classes, 24 training images" in stdout
    for method in ("a", "b", "a-cqd"):
        match = re.search(rf"^ *{method}: {ACCURACY}$", stdout, re.MULTILINE)
        assert match, f"no accuracies for {method} in:\n{stdout}"
        for view, printed in zip("xz", match.groups()):
            assert float(printed) == pytest.approx(100 * recomputed_accuracy(out, method, view), abs=0.051)
        assert (out / method / "model.safetensors").exists()
    assert len((EXAMPLES / "api_end_to_end.py").read_text().splitlines()) < 50, "promised: under 50 lines"
    pairs = plt.imread(out / "pairs.png")
    assert pairs.shape[:2] == (4 * 32, 2 * 32), "four x | z pairs of 32 px"
    predicted = re.search(r"^a-cqd predicts \[(.*)\]$", stdout, re.MULTILINE)
    assert predicted and len(predicted.group(1).split(", ")) == 4, stdout


def test_minimal_plugin_script_registers_the_plugin_and_trains_with_it(run_example, tmp_path):
    out = tmp_path / "occlude"
    stdout = run_example(EXAMPLES / "minimal_plugin" / "use_plugin.py", "--out", str(out))
    hidden = re.search(r"occlude hid (\d+)% of z's pixels", stdout)
    assert hidden and int(hidden.group(1)) == 17, stdout  # a 13 x 13 square (0.4 x 32 px) of 32 x 32
    assert plt.imread(out / "pair.png").shape[:2] == (32, 64)
    config = json.loads((out / "run" / "config.json").read_text())
    assert [op["name"] for op in config["pipeline"]["ops"]] == ["occlude"]
    models = json.loads((out / "run" / "results.json").read_text())["models"]
    assert set(models) == {"a", "a-cqd", "b"}
    assert "A+CQD" in stdout and "test B (z)" in stdout, "the run's accuracy table is printed"


@pytest.fixture
def occlude_installed(fake_distribution, monkeypatch):
    """examples/minimal_plugin installed: the real install if present, else an equivalent fake one."""
    try:
        importlib.metadata.distribution("cqdkit-occlude")
    except importlib.metadata.PackageNotFoundError:
        fake_distribution("cqdkit-occlude", "0.1.0", {"occlude": "cqdkit_occlude"})
    monkeypatch.syspath_prepend(str(EXAMPLES / "minimal_plugin"))  # also makes test_occlude importable
    configure_autoload(None)
    yield
    configure_autoload(None)
    for module in ("cqdkit_occlude", "test_occlude"):
        sys.modules.pop(module, None)


def test_minimal_plugin_is_discovered_and_its_own_tests_pass(occlude_installed):
    entry = PluginManager(autoload=True).degradation("occlude")
    assert entry.random and [p.name for p in entry.params] == ["fraction"]
    import test_occlude  # the plugin's test file, as docs/plugins.md has the reader write it

    test_occlude.test_occlude_keeps_the_degradation_contract()
    test_occlude.test_occlude_hides_one_gray_square_of_the_asked_size()
