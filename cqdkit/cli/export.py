"""``cqdkit export RUN_DIR``: the trained student (or a multires router) as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path

import click

from .console import console


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(["onnx", "torchscript"]), default="onnx",
              show_default=True, help="ONNX (onnxruntime, TensorRT, ...) or TorchScript (libtorch).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [RUN_DIR/export/<model>.onnx or .pt].")
@click.option("--model", help="A model of the run: a, b, a-b, cqd, a-cqd [the run's student; a multires "
                              "directory: its router].")
@click.option("--force", is_flag=True, help="Replace --out even when it is not a previous cqdkit export "
                                            "(a previous export, recognised by its <file>.json, is always replaced).")
def export(run_dir: Path, format_: str, out: Path | None, model: str | None, force: bool) -> None:
    """Export a run's model with its preprocessing (0..255 RGB NCHW in, logits out)."""
    from ..export import export_model

    result = export_model(run_dir, format_, out, model=model, force=force)
    console.print(f"wrote {result.path} and {result.metadata_path}")
    if result.max_abs_difference is None:
        console.print("not checked: onnxruntime is not installed")
    else:
        console.print(f"largest logit difference from torch on a random batch: {result.max_abs_difference:.2e}")
