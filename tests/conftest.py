"""Shared fixtures: cqdkit's own pytest plugin, a fake installed distribution factory, and plugins/ packages."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cqdkit.plugin import configure_autoload

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


PLUGIN_PACKAGES = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture
def plugin_package(fake_distribution, monkeypatch) -> Iterator[Callable[[str, dict[str, str]], None]]:
    """Make a package of ``plugins/`` installed: the real install if present, else an equivalent fake one.

    ``plugin_package("cqdkit-sepia", {"sepia": "cqdkit_sepia"})`` (the distribution and its entry points).
    """

    def install(dist: str, entry_points: dict[str, str]) -> None:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            fake_distribution(dist, "0.1.0", entry_points)
            monkeypatch.syspath_prepend(str(PLUGIN_PACKAGES / dist))
        configure_autoload(None)

    yield install
    configure_autoload(None)


@pytest.fixture(autouse=True)
def float32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test computes in float32 on the CPU, whatever bf16 hardware this machine has: a timing probe must not
    decide a test's numbers (the tests of the probe switch bf16 back on for themselves)."""
    monkeypatch.setattr("cqdkit.train.experiment.cpu_has_fast_bf16", lambda: False)
