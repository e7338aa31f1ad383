"""Export a trained model with its preprocessing, to run without cqdkit (ONNX or TorchScript).

The exported graph takes what the data pipeline hands the model: a batch of RGB images, ``(N, 3, S, S)``
(channels first), pixel values 0..255 as ``float32``, already stretched to the training size ``S``. It
scales and normalises them as in training and returns the class logits ``(N, classes)``. A JSON file next
to the export says which classes the logits are, the input size and the source run::

    >>> from cqdkit.export import export_model
    >>> result = export_model("runs/tps", "onnx")                        # doctest: +SKIP
    >>> import onnxruntime                                               # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession(str(result.path))         # doctest: +SKIP
    >>> logits = session.run(None, {"images": batch.astype("float32")})[0]  # doctest: +SKIP

What is exported: by default the run's student (``results.json``'s method); ``model="a"`` (or another
method) picks another of the run's models, and a ``cqdkit multires`` directory exports its router, which
routes every image to the expert for its predicted quality in the same forward call.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CqdkitError, DataError
from .files import atomic_write, atomic_write_text, is_ours, read_regular_text, refuse_to_overwrite
from .models.preprocessing import Normalizer

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: Largest logit difference between an export and torch accepted by the built-in check.
TOLERANCE = 1e-3


class Classifier(nn.Module):
    """A backbone behind its training-time normalisation: 0..255 RGB ``(N, C, H, W)`` in, logits out."""

    def __init__(self, backbone: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.normalizer = Normalizer(mean, std)
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalizer(images))


@dataclass(frozen=True)
class Exportable:
    """A model ready to export, the shape of its input and what to write next to it."""

    module: nn.Module
    input_shape: tuple[int, int, int]  # (channels, height, width)
    description: dict[str, Any]


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how closely it reproduces the torch model on a random batch."""

    path: Path
    metadata_path: Path
    max_abs_difference: float | None  # None when the runtime to check it (onnxruntime) is not installed


def load_trained(path: Path) -> Exportable:
    """Rebuild a model saved by a run (``model.safetensors`` + ``model.json``) behind its normalisation."""
    from .models import create_backbone
    from .models.weights import read_state_dict
    from .schema import check_class_names, check_model_description

    json_path = path.with_suffix(".json")
    description = check_model_description(json_path, _read_json(json_path), names=False)
    architecture, num_classes = description["architecture"], description["num_classes"]
    in_chans, size = description.get("in_chans") or 3, description["image_size"]
    mean, std = [float(v) for v in description["mean"]], [float(v) for v in description["std"]]
    backbone = create_backbone(architecture, num_classes=num_classes, in_chans=in_chans)
    state = read_state_dict(path)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        details = " ".join(str(error).split())  # torch's message has a line per tensor
        raise DataError(f"{path}: the weights do not fit a {architecture} with {num_classes} classes and "
                        f"{in_chans} channels, as {json_path.name} says (num_classes, in_chans): {details}")
    check_class_names(json_path, description)  # after the weights: a wrong num_classes is named as such
    module = Classifier(backbone, mean, std).eval()
    return Exportable(module, (in_chans, size, size), {
        "kind": "classifier",
        "architecture": architecture,
        "method": description.get("method"),
        "classes": description.get("classes"),
    })


def find_model(run_dir: Path, model: str | None = None) -> Path:
    """The weights file to export from ``run_dir``: the router, the named method's model, or the student."""
    run_dir = Path(run_dir)
    if model is None and (run_dir / "router.safetensors").exists():
        return run_dir / "router.safetensors"
    if model is None:
        from .schema import check_results

        results = _read_json(run_dir / "results.json")
        if "method" not in results:
            raise DataError(f"{run_dir / 'results.json'}: no 'method' entry; pass the model to export")
        check_results(run_dir / "results.json", results)
        model = results["method"]
    path = run_dir / model / "model.safetensors"
    if not path.exists():
        available = sorted(p.parent.name for p in run_dir.glob("*/model.safetensors"))
        raise CqdkitError(
            f"{run_dir}: no trained model {model!r} (no {path}); models in this run: {available or 'none'}"
        )
    return path


def load_exportable(path: Path) -> Exportable:
    """A run's model or a multires router, from its weights file."""
    if path.name == "router.safetensors":
        from .schema import check_router_description
        from .routing.router import QualityRouter

        check_router_description(path.with_suffix(".json"), _read_json(path.with_suffix(".json")))
        router = QualityRouter.load(path).eval()
        size = router.image_size
        return Exportable(router, (3, size, size), {
            "kind": "router", "qualities": list(router.qualities), "classes": router.classes})
    return load_trained(path)


def export_model(
    run_dir: str | Path,
    format: str,
    out: str | Path | None = None,
    *,
    model: str | None = None,
    force: bool = False,
) -> ExportResult:
    """Export a run's model as ONNX or TorchScript and check it against torch on a random batch.

    The file is written atomically (a temporary file in the same folder, then renamed), so ``out`` is
    either the previous file or the complete new one.

    Args:
        run_dir: a ``cqdkit run`` (or ``cqdkit multires``) directory.
        format: ``"onnx"`` or ``"torchscript"``.
        out: the file to write; default ``RUN_DIR/export/<model>.onnx`` (or ``.pt``).
        model: a method of the run (``a``, ``b``, ...); default the student, or the router of a multires run.
        force: replace ``out`` (and ``<out>.json``) even when they are not a previous cqdkit export.

    Raises:
        CqdkitError: ``out`` (or ``<out>.json``) exists and is not a previous cqdkit export (without
            ``force``), or cannot be written; no model to export; the export does not match torch.
    """
    if format not in FORMATS:
        raise CqdkitError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    source = find_model(Path(run_dir), model)
    exportable = load_exportable(source)
    name = "router" if source.name == "router.safetensors" else source.parent.name
    path = Path(out) if out else Path(run_dir) / "export" / f"{name}{SUFFIXES[format]}"
    metadata_path = path.with_name(path.name + ".json")
    _refuse_to_overwrite(path, metadata_path, force)
    example = torch.rand(2, *exportable.input_shape) * 255
    difference: float | None = None

    def write(temporary: str) -> None:
        nonlocal difference
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notices
            if format == "onnx":
                _export_onnx(exportable.module, example, Path(temporary))
            else:
                torch.jit.trace(exportable.module, example).save(temporary)
        difference = _check(Path(temporary), format, exportable.module, exportable.input_shape)

    try:
        atomic_write(path, write)
    except OSError as error:
        raise CqdkitError(f"cannot write the export {path}: {error.strerror or error}") from None
    metadata = {
        **exportable.description,
        "format": format,
        "source": str(source),
        "input": {"name": "images", "shape": ["N", *exportable.input_shape], "dtype": "float32",
                  "range": [0, 255], "channels": "RGB (then any extra channels)", "layout": "NCHW",
                  "resize": f"stretch to {exportable.input_shape[2]}x{exportable.input_shape[1]} first"},
        "output": {"name": "logits", "shape": ["N", "classes"]},
        "max_abs_difference_vs_torch": difference,
    }
    atomic_write_text(metadata_path, json.dumps(metadata, indent=2))
    if difference is not None and not difference <= TOLERANCE:
        raise CqdkitError(f"{path}: the export's logits differ from torch's by {difference:.3g} on a random "
                          f"batch (tolerance {TOLERANCE}); the file is kept for inspection but should not be used")
    return ExportResult(path, metadata_path, difference)


def is_export(path: Path) -> bool:
    """Whether ``path`` is a previous cqdkit export: its ``<path>.json`` is the metadata that
    :func:`export_model` writes (format, input and output, the check against torch)."""
    try:
        metadata = json.loads(read_regular_text(path.with_name(path.name + ".json"), "an export's metadata"))
    except (OSError, ValueError, DataError):
        return False
    return (
        isinstance(metadata, dict)
        and metadata.get("format") in FORMATS
        and isinstance(metadata.get("input"), dict)
        and metadata["input"].get("name") == "images"
        and isinstance(metadata.get("output"), dict)
        and "max_abs_difference_vs_torch" in metadata
    )


def _refuse_to_overwrite(path: Path, metadata_path: Path, force: bool) -> None:
    """Stop before writing over a folder, or over files that are not a previous export (unless ``force``)."""
    for target in (path, metadata_path):
        if target.is_dir():
            raise CqdkitError(f"{target} is a folder; expected the path of the file to write (--out FILE)")
    ours = is_export(path) or all(is_ours(target) for target in (path, metadata_path))  # (killed between the two)
    refuse_to_overwrite([path, metadata_path], ours=ours, force=force,
                        what=f"a cqdkit export or its metadata ({metadata_path.name})")


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    except ImportError as error:
        raise CqdkitError(f"ONNX export needs the onnx and onnxscript packages ({error}); "
                          "pip install onnx onnxscript") from error


def _check(path: Path, format: str, module: nn.Module, input_shape: tuple[int, int, int]) -> float | None:
    """Largest absolute logit difference between the export and torch on a fresh batch of 3 images."""
    images = torch.rand(3, *input_shape, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        expected = module(images)
    if format == "torchscript":
        exported = torch.jit.load(str(path)).eval()
        with torch.no_grad():
            actual = exported(images)
    else:
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    return float((actual - expected).abs().max())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if not path.exists():
            raise CqdkitError(f"{path} not found: expected a cqdkit run directory")
        payload = json.loads(read_regular_text(path, "a JSON file"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read it as JSON ({error})") from error
    if not isinstance(payload, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload
