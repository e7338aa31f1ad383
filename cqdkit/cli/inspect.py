"""``cqdkit inspect``: what a dataset contains, and what is wrong with it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.table import Table

from .console import console


@click.command(name="inspect")
@click.option("--dataset", "name", default="synthetic", show_default=True, help="Dataset name (see `cqdkit list datasets`).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Dataset folder (not needed for synthetic).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Fraction of train held out for validation.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the validation split.")
@click.option("--skip-bad", is_flag=True, help="Skip and list bad samples instead of stopping at the first "
                                               "(decodes every image, as --deep does).")
@click.option("--deep", is_flag=True, help="Also decode every image (slow on large datasets).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def inspect_(name: str, root: Path | None, val_fraction: float, seed: int, skip_bad: bool, deep: bool, as_json: bool) -> None:
    """Classes, train/val/test sizes, boxes and problems of a dataset."""
    from ..data import load_dataset, split_train_val

    dataset = load_dataset(name, root, skip_bad=skip_bad, deep=deep)
    train, val = split_train_val(dataset.train, val_fraction, seed)
    report = {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "classes": dataset.num_classes,
        "train": len(train),
        "val": len(val),
        "test": len(dataset.test),
        "boxes": dataset.has_boxes,
        "deep": deep or skip_bad,
        "problems": dataset.problems,
        "class_names": dataset.classes,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    per_class = Counter(r.label for r in dataset.train)
    table = Table(title=f"{dataset.name}: {dataset.root}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("classes", f"{dataset.num_classes}  ({_preview(dataset.classes)})")
    fewest, most = min(per_class.values(), default=0), max(per_class.values(), default=0)
    table.add_row("train", f"{len(train)}  (+ {len(val)} held out for validation; {fewest} to {most} per class before)")
    table.add_row("test", str(len(dataset.test)))
    table.add_row("boxes", "yes" if dataset.has_boxes else "no")
    table.add_row("problems", str(len(dataset.problems)) + ("" if deep or skip_bad else "  (images not decoded; --deep decodes all)"))
    console.print(table)
    for problem in dataset.problems:
        console.print(f"  [yellow]skipped:[/] {problem}", highlight=False)


def _preview(names: list[str], count: int = 4) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")
