"""The distiller of docs/plugins.md (examples/hint_plugin), as a user would have it: installed as a third-party
distribution, listed, passing the test kit, and a run of it killed with SIGKILL mid-training resumes to the very
weights of a run never killed (its regressor and the cached teacher features included)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cqdkit.cli import cli
from cqdkit.plugin import PluginManager, configure_autoload
from cqdkit.testing import check_distiller

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hint_plugin"
RUN = ["run", "--degrade", "lowres", "--method", "cqd", "--loss", "hint:student=-2,teacher=-2", "--lambda", "1",
       "--temperature", "10", "--dataset-option", "classes=3", "--dataset-option", "train_per_class=8",
       "--dataset-option", "test_per_class=2", "--dataset-option", "image_size=48", "--image-size", "32",
       "--batch-size", "8", "--epochs", "3", "--teacher", "convnet-s", "--student", "convnet-s", "--no-amp",
       "--no-baseline", "--no-report", "--quiet"]


@pytest.fixture
def hint_installed(fake_distribution):
    """examples/hint_plugin installed as the distribution cqdkit-hint (its entry point, its module)."""
    site = fake_distribution("cqdkit-hint", "0.1.0", {"hint": "cqdkit_hint"},
                             modules={"cqdkit_hint": (EXAMPLE / "cqdkit_hint.py").read_text()})
    configure_autoload(None)
    yield site
    configure_autoload(None)


def test_the_guide_shows_the_example_distiller_file_for_file():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    blocks = dict(re.findall(r"<!-- distiller-file: (\S+) -->\n```\w+\n(.*?)```", guide, re.DOTALL))
    assert set(blocks) == {f"examples/hint_plugin/{name}" for name in ("cqdkit_hint.py", "pyproject.toml",
                                                                        "test_hint.py")}
    for path, code in blocks.items():
        assert code == (ROOT / path).read_text(), f"docs/plugins.md shows another {path} than the repository's"


def test_the_installed_distiller_is_listed_and_passes_the_kit(hint_installed):
    listed = CliRunner().invoke(cli, ["plugins", "--json"])
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == "hint"]
    assert row["kind"] == "loss" and row["plugin"] == "cqdkit-hint" and not row["builtin"]
    check_distiller("hint", manager=PluginManager(autoload=True))


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_weights_of_a_run_never_killed(hint_installed, tmp_path):
    environment = {**os.environ, "CQDKIT_CACHE": str(tmp_path / "cache"),
                   "PYTHONPATH": os.pathsep.join([str(hint_installed), *sys.path])}
    whole = subprocess.run([sys.executable, "-m", "cqdkit", *RUN, "--out", str(tmp_path / "whole")], env=environment,
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    pausing = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cqdkit.train import engine
        real = engine.save_checkpoint
        def save(directory, *, epoch, **kwargs):
            real(directory, epoch=epoch, **kwargs)
            if Path(directory).name == "cqd" and epoch == 1:  # the student's first checkpoint is on disk
                print("checkpointed", flush=True)
                time.sleep(600)
        engine.save_checkpoint = save
        from cqdkit.cli import main
        sys.argv = ["cqdkit", *{RUN + ["--out", str(tmp_path / "killed")]!r}]
        main()
    """)
    process = subprocess.Popen([sys.executable, "-c", pausing], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "checkpointed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = tmp_path / "killed"
    assert list((killed / "a").glob("teacher-features-*.npy")), "the teacher's features were cached"
    assert not (killed / "cqd" / "model.safetensors").exists(), "the student had not finished"
    resumed = subprocess.run([sys.executable, "-m", "cqdkit", *RUN, "--out", str(killed), "--resume"],
                             env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "epoch-0003.safetensors"):  # the student, then its regressor too
        expected, actual = load_file(str(tmp_path / "whole" / "cqd" / name)), load_file(str(killed / "cqd" / name))
        assert expected.keys() == actual.keys()
        for key, tensor in expected.items():
            assert torch.equal(actual[key], tensor), f"{name}: {key} differs after the kill and the resume"
    assert any(key.startswith("parts.hint.regressor") for key in expected)
