"""Docs and code cannot drift apart: every hook is documented in docs/plugins.md and exercised by a test."""

from __future__ import annotations

import re
import types
from pathlib import Path

import click
import pytest

from cqdkit.errors import CqdkitError, DataError
from cqdkit.plugin import PluginManager, spec

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(spec.HOOK_FOR_KIND.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_in_the_plugin_guide(hook):
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{hook}()`" in guide, f"docs/plugins.md has no section for {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_in_a_test(hook):
    implemented = re.compile(rf"^\s*def {hook}\(", re.MULTILINE)
    tests = [p for p in (ROOT / "tests").glob("test_*.py") if implemented.search(p.read_text())]
    assert tests, f"no test implements the hook {hook}"


def test_the_hook_specification_is_what_the_guide_documents():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^### `(cqdkit_\w+)\(\)`", guide, re.MULTILINE))
    assert documented == set(HOOKS)


def test_the_guide_lists_every_built_in_name_a_plugin_should_avoid():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    section = guide.split("## Names cqdkit uses", 1)[1].split("\n## ", 1)[0]
    manager = PluginManager(autoload=False)
    for kind in ("degradation", "backbone", "loss", "dataset"):
        [row] = [line for line in section.splitlines() if line.startswith(f"| {kind} |")]
        listed = set(re.findall(r"`([^`]+)`", row.split("|")[2].split("(")[0]))
        assert listed == {entry.name for entry in manager.entries(kind)}, kind


def test_readme_has_exactly_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert len(commands) == 2
    assert commands[1].endswith("python -m pytest")
    assert "cqdkit run" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].replace("pip install", "python -m pip install -q").split(" && ")[0] in ci


# -- the plugin guide's code is the code that runs --------------------------------------------------

GUIDE = ROOT / "docs" / "plugins.md"
BLOCK = r"```(\w+)\n(.*?)```"


def marked_blocks(marker: str) -> dict[str, str]:
    """Code blocks preceded by ``<!-- marker: value -->``, by value."""
    pattern = rf"<!-- {marker}: (\S+) -->\n{BLOCK}"
    return {value: code for value, _language, code in re.findall(pattern, GUIDE.read_text(), re.DOTALL)}


def test_the_walk_through_shows_the_example_plugin_file_for_file():
    files = marked_blocks("file")
    assert set(files) == {f"examples/minimal_plugin/{name}" for name in
                          ("pyproject.toml", "cqdkit_occlude.py", "test_occlude.py")}
    for path, code in files.items():
        assert code == (ROOT / path).read_text(), f"docs/plugins.md shows another {path} than the repository's"


def test_every_python_block_of_the_guide_compiles():
    blocks = [code for language, code in re.findall(BLOCK, GUIDE.read_text(), re.DOTALL) if language == "python"]
    assert len(blocks) >= 8
    for number, code in enumerate(blocks):
        compile(code, f"docs/plugins.md python block {number + 1}", "exec")


def test_every_cqdkit_command_in_the_guide_exists_with_its_options():
    from cqdkit.cli import cli

    shell = "\n".join(code for language, code in re.findall(BLOCK, GUIDE.read_text(), re.DOTALL)
                      if language == "bash")
    commands = [line.split() for line in shell.splitlines() if line.startswith("cqdkit ")]
    assert len(commands) >= 4
    for words in commands:
        command = cli
        for word in words[1:]:
            if isinstance(command, click.Group) and word in command.commands:
                command = command.commands[word]
        assert command is not cli, f"unknown command in docs/plugins.md: {' '.join(words)}"
        known = {opt for param in command.params for opt in param.opts}
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in known, f"{' '.join(words)}: {command.name} has no option {option}"


def plugin_from_the_guide(kind: str, manager: PluginManager) -> types.ModuleType:
    """The guide's example plugin of one kind, as a module registered in ``manager``."""
    module = types.ModuleType(f"guide_{kind}_plugin")
    exec(compile(marked_blocks("example")[kind], f"docs/plugins.md ({kind} example)", "exec"), module.__dict__)
    manager.register(module)
    return module


def test_the_guides_backbone_example_builds_a_working_network():
    import torch

    from cqdkit.models import create_backbone, model_input_config

    manager = PluginManager(autoload=False)
    plugin_from_the_guide("backbone", manager)
    for in_chans in (3, 4):
        model = create_backbone("tinycnn", num_classes=5, in_chans=in_chans, manager=manager)
        assert model(torch.zeros(2, in_chans, 24, 32)).shape == (2, 5)
    assert model_input_config(model).mean == (0.485, 0.456, 0.406, 0.5)
    with pytest.raises(CqdkitError, match="no pretrained weights"):
        create_backbone("tinycnn", num_classes=5, pretrained=True, manager=manager)


def test_the_guides_loss_example_passes_the_conformance_check():
    from cqdkit.testing import check_loss

    manager = PluginManager(autoload=False)
    plugin_from_the_guide("loss", manager)
    check_loss("prob-l2", manager=manager)


def test_the_guides_dataset_example_reads_good_rows_and_reports_bad_ones(tmp_path):
    import cv2
    import numpy as np

    from cqdkit.data import load_dataset, load_image

    manager = PluginManager(autoload=False)
    plugin_from_the_guide("dataset", manager)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((6, 8, 3), np.uint8))
    rows = "a.png,cat,train\nb.png,dog,train\nc.png,cat,test\nmissing.png,dog,test\n"
    (tmp_path / "labels.csv").write_text(rows)
    with pytest.raises(DataError, match=r"labels.csv line 4: expected 'file,class,split'"):
        load_dataset("csvlist", tmp_path, manager=manager)
    dataset = load_dataset("csvlist", tmp_path, skip_bad=True, manager=manager)
    assert dataset.classes == ["cat", "dog"] and len(dataset.problems) == 1
    assert [(r.id, r.label) for r in dataset.train] == [("a.png", 0), ("b.png", 1)]
    assert [r.origin for r in dataset.test] == ["labels.csv line 3"]
    assert load_image(dataset.test[0].path).shape == (6, 8, 3)
    (tmp_path / "few.csv").write_text("c.png,cat,test\n")
    assert len(load_dataset("csvlist", tmp_path, manager=manager, labels="few.csv").test) == 1
