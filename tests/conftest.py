"""Shared fixtures: cqdkit's own pytest plugin plus a fake installed distribution factory."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["cqdkit.testing"]


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Make an installed-looking distribution (a ``*.dist-info`` with entry points) on ``sys.path``.

    ``fake_distribution(dist, version, entry_points={"name": "module"}, modules={"module": "source"})``
    """
    imported: list[str] = []

    def make(
        dist: str,
        version: str,
        entry_points: dict[str, str],
        modules: dict[str, str] | None = None,
        group: str = "cqdkit",
    ) -> Path:
        site = tmp_path / f"site-{dist}"
        site.mkdir()
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            imported.append(module)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
        monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for module in imported:
        sys.modules.pop(module, None)
