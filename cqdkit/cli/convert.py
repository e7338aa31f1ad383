"""``cqdkit convert-weights FILE.mat``: a MatConvNet network as safetensors for cqdkit's vggm or timm's vgg16."""

from __future__ import annotations

from pathlib import Path

import click

from .console import console


@click.command("convert-weights")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arch", required=True,
              help="Backbone the file is for: vggm (imagenet-vgg-m.mat) or vgg16 (imagenet-vgg-verydeep-16.mat).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [cqdkit's weight store, where --pretrained finds it: "
                   "$CQDKIT_CACHE/weights/ARCH-matconvnet.safetensors]; a .json sidecar goes next to it.")
def convert_weights(source: Path, arch: str, out: Path | None) -> None:
    """Convert MatConvNet network SOURCE (.mat) for --arch, checking every layer against the backbone.

    By default the result goes to cqdkit's weight store, where --pretrained (the paper profile's default)
    finds it; with --out it loads with --teacher-weights / --student-weights. Either way the input
    normalisation it records (MatConvNet networks take 0..255 RGB minus an average image) is applied, and an
    average image that varies over the image is subtracted pixel by pixel by the network's input layer.
    """
    from ..files import check_ours
    from ..models.matconvnet import convert_file
    from ..models.pretrained import store_path

    out = out or store_path(arch)
    for path in (out, out.with_suffix(".json")):
        check_ours(path)  # before the conversion: a user's file of either name stops it
    description = convert_file(source, arch, out)
    average = description["average_image"]
    size = "x".join(map(str, average["size"]))
    subtracted = (f"the {size} average image subtracted pixel by pixel" if average["spatial"] else
                  "a per-channel average" if size == "1x1" else f"the per-channel mean of the {size} average image")
    console.print(f"wrote {out} and {out.with_suffix('.json')}: {description['num_classes']} classes, "
                  f"{description['layout']} layout, {subtracted}")
