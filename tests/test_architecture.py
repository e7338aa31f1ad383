"""The import rule of docs/architecture.md holds: each package imports only from earlier layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cqdkit"


def documented_layers() -> list[list[str]]:
    """The layers listed under ``<!-- layers -->`` in docs/architecture.md, first layer first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers -->\n```\n(.*?)```", text, re.DOTALL)
    assert block, "docs/architecture.md has no layers block"
    return [line.split() for line in block.group(1).strip().splitlines()]


def component(module: str) -> str:
    """``cqdkit.train.engine`` -> ``train``; ``cqdkit.files`` -> ``files``; ``cqdkit`` -> ``cqdkit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cqdkit"


def imports() -> list[tuple[str, str, Path]]:
    """Every ``(importing component, imported component, file)`` inside cqdkit."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(package[: len(package) - (node.level - 1)])
                    targets.append(".".join(base + ([node.module] if node.module else [])))
                else:
                    targets.append(node.module or "")
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.split(".")[0] == "cqdkit":
                    found.append((component(".".join(parts)), component(target), path))
    return found


def test_every_component_is_in_a_layer():
    layers = documented_layers()
    listed = {name for layer in layers for name in layer}
    present = {path.stem if path.suffix else path.name for path in PACKAGE.iterdir()
               if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists())}
    present -= {"__init__", "__main__"}
    assert present == listed, f"not in docs/architecture.md: {present - listed}; gone: {listed - present}"


def test_imports_go_to_earlier_layers_only():
    layer_of = {name: k for k, layer in enumerate(documented_layers()) for name in layer}
    layer_of["__main__"] = len(layer_of)  # python -m cqdkit runs the CLI
    wrong = sorted(
        f"{path.relative_to(ROOT)}: {source} imports {target}"
        for source, target, path in imports()
        if target not in (source, "cqdkit") and source != "cqdkit" and layer_of[target] >= layer_of[source]
    )
    assert not wrong, "\n".join(wrong)


def test_the_library_never_imports_the_command_line():
    offenders = [str(path.relative_to(ROOT)) for source, target, path in imports()
                 if target == "cli" and source not in ("cli", "__main__")]
    assert not offenders
