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
from cqdkit.errors import PluginError, UnknownNameError
from cqdkit.plugin import (
    Backbone,
    Degradation,
    DistillLoss,
    PluginClashWarning,
    PluginManager,
    configure_autoload,
    hookimpl,
)

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


# -- exceptions inside plugin code: one line, the traceback on request ------------------------------


@pytest.fixture
def failing_occlude(fake_distribution, fresh_default_manager, tmp_path):
    """cqdkit-occlude 0.1.0 installed, with an op that raises; returns an image file to degrade."""
    fake_distribution("cqdkit-occlude", "0.1.0", {"occlude": "failing_occlude"}, {"failing_occlude": FAILING_OP})
    import cv2

    image = tmp_path / "bird.png"
    cv2.imwrite(str(image), np.zeros((20, 24, 3), np.uint8))
    return image


def test_an_exception_in_a_plugins_op_is_one_line_naming_the_plugin(failing_occlude, tmp_path, monkeypatch):
    monkeypatch.delenv("CQDKIT_TRACEBACK", raising=False)
    result = invoke("degrade", "occlude", str(failing_occlude), "--size", "16", "--out", str(tmp_path / "look"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: plugin 'occlude' (cqdkit-occlude 0.1.0) failed in its degradation op: "
                           "ValueError: the square does not fit second line of the message")
    assert "CQDKIT_TRACEBACK=1" in line


def test_cqdkit_traceback_shows_the_plugins_own_frame(failing_occlude, tmp_path, monkeypatch):
    monkeypatch.setenv("CQDKIT_TRACEBACK", "1")
    result = invoke("degrade", "occlude", str(failing_occlude), "--size", "16", "--out", str(tmp_path / "look"))
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "failing_occlude.py" in result.stderr
    assert 'raise ValueError("the square does not fit' in result.stderr  # the author's line
    assert result.stderr.strip().splitlines()[-1].startswith("error: plugin 'occlude' (cqdkit-occlude 0.1.0)")


def test_traceback_is_documented():
    for doc in ("plugins.md", "cli.md"):
        assert "CQDKIT_TRACEBACK=1" in (ROOT / "docs" / doc).read_text(), doc


def plugin_module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def author_frames(error: BaseException, function: str) -> list[traceback.FrameSummary]:
    return [frame for frame in traceback.extract_tb(error.__traceback__) if frame.name == function]


def test_pytest_shows_the_authors_frame_in_check_degradation(cqdkit_plugin_manager, register_plugin):
    from cqdkit.testing import check_degradation

    class Broken:
        def __call__(self, views, rng):
            return views._replace(z=views.z[::2].missing_attribute)

    register_plugin(plugin_module("broken_deg", cqdkit_degradations=lambda: [
        Degradation(name="broken", summary="raises", factory=Broken)]))
    with pytest.raises(PluginError, match=r"plugin 'broken_deg' failed in its degradation op: AttributeError") as info:
        check_degradation("broken", manager=cqdkit_plugin_manager)
    cause = info.value.__cause__
    assert isinstance(cause, AttributeError) and author_frames(cause, "__call__")  # pytest prints the chain


def test_pytest_prints_the_chained_authors_frame(tmp_path):
    """In a real pytest run, the report of the failing check shows the line of the plugin that raised."""
    (tmp_path / "conftest.py").write_text("pytest_plugins = ['cqdkit.testing']\n")
    (tmp_path / "test_author.py").write_text(
        "from cqdkit.plugin import Degradation, hookimpl\n"
        "from cqdkit.testing import check_degradation\n\n"
        "class Mine:\n"
        "    def __call__(self, views, rng):\n"
        "        return views._replace(z=views.z.author_typo)\n\n"
        "class Plugin:\n"
        "    @hookimpl\n"
        "    def cqdkit_degradations(self):\n"
        "        yield Degradation(name='mine', summary='mine', factory=Mine)\n\n"
        "def test_mine(register_plugin, cqdkit_plugin_manager):\n"
        "    register_plugin(Plugin(), name='mine-plugin')\n"
        "    check_degradation('mine', manager=cqdkit_plugin_manager)\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_author.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "views.z.author_typo" in done.stdout  # the author's own line, with pytest's marker
    assert "The above exception was the direct cause" in done.stdout
    assert "plugin 'mine-plugin' failed in its degradation op: AttributeError" in done.stdout


def test_a_backbone_factory_that_raises_names_its_plugin(cqdkit_plugin_manager, register_plugin):
    from cqdkit.models import create_backbone

    def broken(num_classes, in_chans=3, pretrained=False):
        return {}["no such layer"]

    register_plugin(plugin_module("my_backbones", cqdkit_backbones=lambda: [
        Backbone(name="broken-net", summary="raises", factory=broken)]))
    with pytest.raises(PluginError) as info:
        create_backbone("broken-net", num_classes=3, manager=cqdkit_plugin_manager)
    assert str(info.value) == ("plugin 'my_backbones' failed in its backbone factory: KeyError: 'no such layer'")
    assert isinstance(info.value.__cause__, KeyError) and author_frames(info.value.__cause__, "broken")


FAILING_FORWARD = """
from torch import nn
from cqdkit.plugin import Backbone, hookimpl


class Broken(nn.Module):
    def __init__(self, num_classes, in_chans=3, pretrained=False):
        super().__init__()
        self.classifier = nn.Linear(in_chans, num_classes)
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "classifier": "classifier"}

    def forward(self, images):
        raise RuntimeError("forward-exploded")


@hookimpl
def cqdkit_backbones():
    yield Backbone(name="broken-forward", summary="raises in its forward pass", factory=Broken)
"""


def test_a_backbone_whose_forward_pass_raises_is_one_line_before_anything_trains(fake_distribution,
                                                                                 fresh_default_manager, tmp_path,
                                                                                 monkeypatch):
    from tests.test_run_cli import TINY

    monkeypatch.delenv("CQDKIT_TRACEBACK", raising=False)
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    fake_distribution("cqdkit-broken", "0.1.0", {"broken": "failing_forward"}, {"failing_forward": FAILING_FORWARD})
    out = tmp_path / "out"
    result = invoke("run", "--degrade", "gray", *TINY, "--student", "broken-forward", "--out", str(out))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith("error: plugin 'broken' (cqdkit-broken 0.1.0) failed in its backbone 'broken-forward' "
                           "forward pass on (2, 3, 32, 32) images: RuntimeError: forward-exploded")
    assert not list(out.rglob("model.safetensors")), "nothing trained"


def test_a_loss_that_raises_names_its_plugin_and_cqdkit_errors_pass_through(cqdkit_plugin_manager,
                                                                            register_plugin):
    import torch

    from cqdkit.errors import TrainingError

    class Loss:
        def __init__(self, temperature):
            self.temperature = temperature

        def __call__(self, student, teacher):
            if self.temperature < 0:
                raise TrainingError("my loss needs T >= 0")
            return student @ teacher  # (N, C) @ (N, C): a shape error from torch

    def bad_factory(temperature):
        raise RuntimeError("factory broke")

    register_plugin(plugin_module("my_losses", cqdkit_losses=lambda: [
        DistillLoss(name="matmul", summary="raises", factory=Loss),
        DistillLoss(name="no-factory", summary="raises", factory=bad_factory)]))
    loss = cqdkit_plugin_manager.loss("matmul").factory(temperature=2.0)
    assert loss.temperature == 2.0  # the plugin's object is still reachable
    student, teacher = torch.zeros(4, 3), torch.zeros(4, 3)
    with pytest.raises(PluginError, match=r"^plugin 'my_losses' failed in its loss: RuntimeError: ") as info:
        loss(student, teacher)
    assert author_frames(info.value.__cause__, "__call__")
    with pytest.raises(TrainingError, match="^my loss needs T >= 0$"):  # the plugin's own message, unchanged
        cqdkit_plugin_manager.loss("matmul").factory(temperature=-1.0)(student, teacher)
    with pytest.raises(PluginError, match="failed in its loss factory: RuntimeError: factory broke"):
        cqdkit_plugin_manager.loss("no-factory").factory(temperature=2.0)


def test_a_dataset_factory_that_raises_names_its_plugin_but_file_errors_stay_as_they_are(
        cqdkit_plugin_manager, register_plugin, tmp_path):
    from cqdkit.data import load_dataset
    from cqdkit.plugin import DatasetSource

    def reader(root, *, skip_bad=False):
        if root.name == "missing":
            return open(root / "labels.csv")  # an OSError: the system's words, printed as one line already
        return int("three")

    register_plugin(plugin_module("my_data", cqdkit_datasets=lambda: [
        DatasetSource(name="mine", summary="raises", factory=reader)]))
    with pytest.raises(PluginError, match=r"^plugin 'my_data' failed in its dataset factory: ValueError: invalid"):
        load_dataset("mine", tmp_path, manager=cqdkit_plugin_manager)
    with pytest.raises(FileNotFoundError):
        load_dataset("mine", tmp_path / "missing", manager=cqdkit_plugin_manager)


def test_errors_in_cqdkits_own_plugins_stay_tracebacks(cqdkit_plugin_manager):
    """A built-in raising is a bug in cqdkit: the original exception, unchanged."""
    from cqdkit.plugin.guard import reraise

    [builtin] = [info for info in cqdkit_plugin_manager.plugins() if info.name == "cqdkit.losses.plugin"]
    error = ValueError("a bug")
    with pytest.raises(ValueError) as info:
        try:
            raise error
        except ValueError as caught:
            reraise(builtin, "loss", caught)
    assert info.value is error
    loss = cqdkit_plugin_manager.loss("softce")
    assert loss.factory.__module__ == "cqdkit.losses.plugin"  # not wrapped: nothing between trainer and loss


# -- a loss returning one value per sample fails before training -------------------------------------


def per_sample_loss(temperature):
    def loss(student, teacher):
        return (student - teacher).square().sum(dim=1)  # (N,): forgot the mean

    return loss


def test_a_per_sample_loss_is_refused_when_it_is_built(cqdkit_plugin_manager, register_plugin):
    import torch

    from cqdkit.losses import build_loss

    register_plugin(plugin_module("vector_loss", cqdkit_losses=lambda: [
        DistillLoss(name="per-sample", summary="a vector", factory=per_sample_loss)]))
    state = torch.random.get_rng_state()
    with pytest.raises(PluginError, match=r"loss 'per-sample' of plugin 'vector_loss' returned a tensor of shape "
                                          r"\(2,\) for a batch of 2; expected a scalar .*mean over the batch"):
        build_loss("per-sample", temperature=4.0, manager=cqdkit_plugin_manager)
    assert torch.equal(torch.random.get_rng_state(), state)  # the check leaves the seeded streams alone


@pytest.mark.parametrize("name", ["softce", "logit-l2", "kl"])
def test_built_in_losses_pass_the_build_check(name, cqdkit_plugin_manager):
    import torch

    from cqdkit.losses import build_loss

    loss = build_loss(name, temperature=10.0, manager=cqdkit_plugin_manager)
    value = loss(torch.zeros(3, 4, requires_grad=True), torch.ones(3, 4))
    assert value.shape == ()


def test_build_check_refuses_other_non_scalars(cqdkit_plugin_manager, register_plugin):
    from cqdkit.losses import build_loss

    register_plugin(plugin_module("odd_losses", cqdkit_losses=lambda: [
        DistillLoss(name="float", summary="a float", factory=lambda temperature: (lambda s, t: 1.0)),
        DistillLoss(name="detached", summary="no grad", factory=lambda temperature: (lambda s, t: (s - t).sum().detach())),
        DistillLoss(name="labels", summary="needs labels", needs_labels=True,
                    factory=lambda temperature: (lambda s, t, y: (s - t).square().mean() + 0 * y.sum())),
    ]))
    with pytest.raises(PluginError, match="returned float; expected a scalar tensor"):
        build_loss("float", temperature=1.0, manager=cqdkit_plugin_manager)
    with pytest.raises(PluginError, match="does not depend on the student's logits"):
        build_loss("detached", temperature=1.0, manager=cqdkit_plugin_manager)
    build_loss("labels", temperature=1.0, manager=cqdkit_plugin_manager)  # called with labels: fine


# -- a name clash says how to get past it -----------------------------------------------------------


def test_two_distributions_with_one_name_keep_the_first_by_name(fake_distribution, fresh_default_manager):
    # registered in the order of the distributions' names, whatever the order on sys.path
    fake_distribution("cqdkit-one", "1.0", {"one": "one_plugin"}, {"one_plugin": one_dup("one")})
    fake_distribution("cqdkit-two", "2.0", {"two": "two_plugin"}, {"two_plugin": one_dup("two")})  # first on the path
    with pytest.warns(PluginClashWarning) as caught:
        manager = PluginManager(autoload=True)
        assert manager.degradation("dup").summary == "one's dup"
    message = str(caught[0].message)
    assert "one (cqdkit-one 1.0)" in message and "two (cqdkit-two 2.0)" in message
    assert "pip uninstall cqdkit-two" in message and "pip uninstall cqdkit-one" not in message
    result = invoke("list", "degradations")
    assert result.exit_code == 0 and "dup  one's dup" in result.stdout
    assert "warning:" in result.stderr and "cqdkit-two" in squashed(result.stderr)
    version = invoke("--version")
    assert version.exit_code == 0 and "problem: degradation 'dup' is provided by" in version.stderr


def test_a_clash_with_a_built_in_keeps_the_built_in(fake_distribution):
    fake_distribution("cqdkit-mytps", "0.1", {"mytps": "mytps_plugin"}, {"mytps_plugin": one_dup("x").replace(
        '"dup"', '"tps"')})
    with pytest.warns(PluginClashWarning, match="the built-in is kept") as caught:
        manager = PluginManager(autoload=True)
        assert manager.provider("degradation", "tps").builtin
    message = str(caught[0].message)
    assert "cqdkit.degradations.plugin (cqdkit" in message and "mytps (cqdkit-mytps 0.1)" in message
    assert "pip uninstall cqdkit-mytps" in message and "docs/plugins.md#names-cqdkit-uses" in message


# -- the test kit -----------------------------------------------------------------------------------


def test_the_test_kit_has_one_import_path():
    import cqdkit.testing as kit
    from cqdkit.testing import check_backbone, check_degradation, check_loss  # noqa: F401

    assert {"check_backbone", "check_degradation", "check_loss"} <= set(kit.__all__)
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert "from cqdkit.testing import check_degradation, check_loss, check_backbone" in guide
    assert "from cqdkit.testing.degradations import check_degradation" not in guide
    assert "check_backbone(name" in guide


def test_check_backbone_passes_cqdkits_and_the_guides_backbones(cqdkit_plugin_manager):
    from cqdkit.testing import check_backbone

    from .test_docs import plugin_from_the_guide

    check_backbone("convnet-s", manager=cqdkit_plugin_manager)
    plugin_from_the_guide("backbone", cqdkit_plugin_manager)
    check_backbone("tinycnn", manager=cqdkit_plugin_manager)


def backbone_plugin(factory) -> types.ModuleType:
    return plugin_module("bb_plugin", cqdkit_backbones=lambda: [Backbone(name="bb", summary="b", factory=factory)])


def test_check_backbone_finds_what_cqdkit_relies_on(cqdkit_plugin_manager, register_plugin):
    from torch import nn

    from cqdkit.testing import check_backbone

    def net(num_classes, in_chans, classifier="head", out=None, bn=True):
        model = nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.BatchNorm2d(4) if bn else nn.Identity(), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, out or num_classes))
        model.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "classifier": classifier}
        return model

    cases = {
        "output of shape (2, 3)": lambda num_classes, in_chans=3, pretrained=False: net(num_classes, in_chans, "5",
                                                                                        out=3),
        "ignores in_chans": lambda num_classes, in_chans=3, pretrained=False: net(num_classes, 3, "5"),
        "no module '5.weight'": lambda num_classes, in_chans=3, pretrained=False: net(num_classes, in_chans,
                                                                                      "5.weight"),
        "returned dict": lambda num_classes, in_chans=3, pretrained=False: {},
    }
    for expected, factory in cases.items():
        register_plugin(backbone_plugin(factory), name=f"bb-{len(expected)}")
        with pytest.raises(AssertionError, match=re.escape(expected)):
            check_backbone("bb", manager=cqdkit_plugin_manager)
        cqdkit_plugin_manager.unregister(f"bb-{len(expected)}")
    register_plugin(backbone_plugin(lambda num_classes, in_chans=3, pretrained=False: net(num_classes, in_chans, "5")))
    check_backbone("bb", manager=cqdkit_plugin_manager)


def test_check_backbone_catches_a_network_that_does_not_learn(cqdkit_plugin_manager, register_plugin):
    from torch import nn

    from cqdkit.testing import check_backbone

    class Frozen(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.classifier = nn.Linear(3, num_classes)
            self.classifier.requires_grad_(False)

        def forward(self, x):
            return self.classifier(x.mean(dim=(2, 3))[:, :3])

    register_plugin(backbone_plugin(lambda num_classes, in_chans=3, pretrained=False: Frozen(num_classes)))
    with pytest.raises(AssertionError, match="one training step"):
        check_backbone("bb", manager=cqdkit_plugin_manager, in_chans=(3,))


# -- the guide's degradation template ---------------------------------------------------------------


def test_the_degradation_template_imports_cqdkit_types_for_type_hints_only():
    source = (ROOT / "examples" / "minimal_plugin" / "cqdkit_occlude.py").read_text()
    tree = ast.parse(source)
    runtime = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(not (isinstance(n, ast.ImportFrom) and n.module == "cqdkit.degradations") for n in runtime)
    [guarded] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    assert "from cqdkit.degradations import Views" in ast.unparse(guarded)
    code = ("import sys; sys.path.insert(0, 'examples/minimal_plugin'); import cqdkit_occlude; "
            "print(sorted(m for m in ('cv2', 'torch', 'cqdkit.images', 'cqdkit.degradations.views') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    assert done.stdout.strip() == "[]"


def test_the_guide_explains_describe():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    section = guide.split("### What `describe()` is for", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert "config.json" in section and "check_degradation" in section


def test_a_per_sample_loss_is_refused_before_training_when_its_strength_is_chosen_on_validation(
        cqdkit_plugin_manager, register_plugin, tmp_path, monkeypatch):
    from cqdkit.train.config import RunConfig
    from cqdkit.train.experiment import Experiment

    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    register_plugin(plugin_module("vector_loss", cqdkit_losses=lambda: [
        DistillLoss(name="per-sample", summary="a vector", factory=per_sample_loss)]))
    config = RunConfig(degrade="gray", loss="per-sample", lam="auto", teacher="convnet-s", student="convnet-s",
                       dataset_options={"classes": "3", "train_per_class": "4", "test_per_class": "2"},
                       image_size=32, device="cpu")
    with pytest.raises(PluginError, match="returned a tensor of shape"):
        Experiment(config, tmp_path / "run", manager=cqdkit_plugin_manager)  # nothing trained yet
    assert not (tmp_path / "run").exists()
