"""``cqdkit degrade``: write the (x, z) pairs of a degradation spec for some images, and a Figure-3 grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import SpecError
from ..train.config import MAX_IMAGE_SIZE, MAX_SEED

GAP = 4  # white pixels between the tiles of grid.png


@click.command("degrade")
@click.argument("spec")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <stem>_x.png, <stem>_z.png and grid.png (created if needed).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=MAX_SEED - 1), help="Per-sample seed.")
@click.option("--size", default=224, show_default=True, type=click.IntRange(min=1, max=MAX_IMAGE_SIZE), help="Side of x and z.")
@click.option("--bbox", default=None, metavar="X,Y,W,H", help="Object box in pixels, for every image.")
@click.option("--crop", is_flag=True, help="Make x from the box crop instead of the whole image.")
def degrade(spec: str, images: tuple[Path, ...], out_dir: Path, seed: int, size: int, bbox: str | None,
            crop: bool) -> None:
    """Degrade IMAGE... with SPEC (e.g. 'lowres:size=32+jpeg:severity=3') and save the pairs as PNG.

    The top row of grid.png shows the high-quality views x, the bottom row the low-quality views z.
    """
    import numpy as np

    from ..degradations import PairMaker
    from ..files import check_ours
    from ..images import load_image, write_png

    maker = PairMaker(spec, size=size, crop=crop)
    box = _parse_bbox(bbox) if bbox else None
    outputs = output_names(images)
    for name in [*(name for pair in outputs for name in pair), "grid.png"]:
        check_ours(out_dir / name)  # before anything is written: a user's file of one of these names stops it
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    table = Table("image", "x", "z", title=f"cqdkit degrade {spec!r}")
    pairs = []
    for path, (x_name, z_name) in zip(images, outputs):
        image = load_image(path)
        x, z = maker(image, bbox=box, seed=seed)
        write_png(out_dir / x_name, x)
        write_png(out_dir / z_name, z)
        pairs.append((x, z))
        table.add_row(str(path), str(out_dir / x_name), str(out_dir / z_name))
    white = np.full((size, GAP, 3), 255, np.uint8)
    rows = [np.hstack([tile for pair in pairs for tile in (pair[i], white)][:-1]) for i in (0, 1)]
    grid = np.vstack([rows[0], np.full((GAP, rows[0].shape[1], 3), 255, np.uint8), rows[1]])
    write_png(out_dir / "grid.png", grid)
    console.print(table)
    for op in maker.describe()["ops"]:
        extra = {k: v for k, v in op.items() if k not in ("name", "params")}
        details = str(op["params"]) + (f" {extra}" if extra else "")
        console.print(f"[bold]{op['name']}[/bold] " + escape(details))
    console.print(f"grid: {out_dir / 'grid.png'} (top row x, bottom row z)")


def output_names(images: Sequence[Path]) -> list[tuple[str, str]]:
    """The file names of each image's x and z: ``<stem>_x.png``, ``<stem>_z.png``, with ``-2``, ``-3`` ... after a
    stem that is taken already (``a.png`` and ``a.jpg``), so that no pair overwrites another.

        >>> output_names([Path("a.png"), Path("b/a.jpg"), Path("a-2.png")])
        [('a_x.png', 'a_z.png'), ('a-2_x.png', 'a-2_z.png'), ('a-2-2_x.png', 'a-2-2_z.png')]
    """
    taken: set[str] = set()
    names = []
    for path in images:
        stem, copy = path.stem, 1
        while stem in taken:
            copy += 1
            stem = f"{path.stem}-{copy}"
        taken.add(stem)
        names.append((f"{stem}_x.png", f"{stem}_z.png"))
    return names


def _parse_bbox(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise SpecError(f"--bbox expects four numbers X,Y,W,H (pixels), got {text!r}")
    return values
