"""``cqdkit sr-train``: train the SRCNN upsampler for ``lowres:upsample=srcnn,weights=FILE`` (Table 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ..train.config import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_IMAGE_SIZE, MAX_SEED

from .console import console, err_console
from .options import dataset_options


@click.command("sr-train")
@dataset_options
@click.option("--size", default=50, show_default=True, type=click.IntRange(min=1, max=MAX_IMAGE_SIZE),
              help="The lowres size to undo: side of the small image at 224 px (scales with --image-size).")
@click.option("--image-size", type=click.IntRange(min=8, max=MAX_IMAGE_SIZE), help="Side of x and z [synthetic: 64; else 224].")
@click.option("--crop/--no-crop", default=None, help="Train on the object box crops; default: when boxes exist.")
@click.option("--patch", default=32, show_default=True, type=click.IntRange(min=9, max=MAX_IMAGE_SIZE), help="Training patch side.")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(min=1, max=MAX_EPOCHS))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1, max=MAX_BATCH_SIZE))
@click.option("--lr", default=1e-4, show_default=True, type=float, help="Adam learning rate (constant).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=MAX_SEED - 1))
@click.option("--device", default="cpu", show_default=True, help="Where to train: cpu, cuda, cuda:N or auto.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file to write (.safetensors; a .json with PSNR and settings goes next to it).")
@click.option("--force", is_flag=True,
              help="Write over --out and its .json even when an earlier sr-train did not write them.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
def sr_train(**options: Any) -> None:
    """Train SRCNN 9-5-5 on the training images' luma: x against x shrunk to --size and upsampled bicubically.

    Prints the validation PSNR of bicubic and SRCNN upsampling; use the weights as
    'lowres:size=SIZE,upsample=srcnn,weights=OUT'.
    """
    from ..train.superres import train_srcnn

    def progress(epoch: int, loss: float) -> None:
        err_console.print(f"epoch {epoch}/{options['epochs']}: luma MSE {loss:.6f}", highlight=False)

    report = train_srcnn(
        options["out"],
        dataset=options["dataset"],
        root=options["root"],
        dataset_options=options["dataset_options"],
        skip_bad=options["skip_bad"],
        size=options["size"],
        image_size=options["image_size"],
        crop=options["crop"],
        patch=options["patch"],
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        lr=options["lr"],
        seed=options["seed"],
        device=options["device"],
        progress=None if options["quiet"] else progress,
        force=options["force"],
    )
    psnr = report["psnr"]
    console.print(
        f"validation luma PSNR ({report['val_images']} images, {report['small']} -> {report['image_size']} px): "
        f"bicubic {psnr['bicubic']:.2f} dB, SRCNN {psnr['srcnn']:.2f} dB "
        f"({psnr['srcnn'] - psnr['bicubic']:+.2f} dB)",
        highlight=False,
    )
    console.print(f"weights: {report['weights']} (+ .json); spec: "
                  f"lowres:size={report['size']},upsample=srcnn,weights={report['weights']}", highlight=False)
    console.print(f"wall time {report['wall_seconds']:.0f} s", style="dim")
