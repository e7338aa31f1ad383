"""Docs and code cannot drift apart: every hook is documented in docs/plugins.md and exercised by a test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqdkit.plugin import spec

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


def test_readme_has_exactly_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert len(commands) == 2
    assert commands[1].endswith("python -m pytest")
    assert "cqdkit run" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].replace("pip install", "python -m pip install -q").split(" && ")[0] in ci
