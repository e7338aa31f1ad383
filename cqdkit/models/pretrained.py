"""Where a backbone's pretrained weights come from, found before anything trains.

The paper fine-tunes ImageNet-pretrained networks, so ``--profile paper`` (the default for CUB, Cars and
image folders) starts from pretrained weights. :func:`locate_pretrained` finds them first, in this order:

1. a converted MatConvNet file in cqdkit's weight store (``<cache>/weights/<arch>-matconvnet.safetensors``,
   written by ``cqdkit convert-weights FILE.mat --arch ARCH``): the paper's own vgg-m, or vgg-vd for vgg16;
2. for ``vggm`` and ``vgg16``, the paper's MatConvNet file, downloaded from MatConvNet's models location and
   converted into the weight store (:mod:`cqdkit.models.download`);
3. for a timm model (vgg16 too, when that download cannot reach the server), its weights in the Hugging Face
   cache, else downloaded from the hub.

When none can be had (offline and not cached), it raises one line naming the model and the ways out;
training from scratch silently is never what someone who asked for the paper's protocol wants. Its
answer, recorded in a run's config.json, says where the weights came from (file and SHA-256, and for a
converted file the MatConvNet file's source and SHA-256; or hub repository and file).

Example::

    locate_pretrained("resnet18")   # {"source": "timm hub", "repository": "timm/resnet18.a1_in1k", ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CqdkitError
from ..files import default_cache_dir, sha256


def store_path(arch: str) -> Path:
    """Where ``cqdkit convert-weights`` puts (and ``--pretrained`` looks for) converted weights of ``arch``."""
    return default_cache_dir() / "weights" / f"{arch}-matconvnet.safetensors"


def locate_pretrained(arch: str) -> dict[str, Any]:
    """The pretrained weights of backbone ``arch``, found (or downloaded into timm's cache) now.

    Returns where they come from: ``{"source": "file", "path", "sha256"}`` for a converted file, with
    ``"matconvnet": {"source", "sha256"}`` (the ``.mat`` file or URL it was converted from) when its JSON sidecar
    says; ``{"source": "timm hub", "repository", "path"}`` for timm, ``{"source": "plugin"}`` for a backbone of
    a third-party plugin (its factory loads its own weights).

    Raises:
        CqdkitError: the weights cannot be had; the message names the model and the ways out.
    """
    from .download import FILES, Offline, download_matconvnet

    stored = store_path(arch)
    if stored.exists():
        return _stored(stored)
    offline = ""
    if arch in FILES:
        from ..lock import folder_lock

        try:
            with folder_lock(stored.parent, what="weight store"):
                if not stored.exists():  # another process may have converted it while we waited
                    download_matconvnet(arch, stored)
            return _stored(stored)
        except Offline as error:
            offline = f"downloading it failed: {error}"
    if arch == "vggm":
        raise CqdkitError(
            f"no pretrained vggm weights: {stored} does not exist and {offline}. The paper's vgg-m is MatConvNet's "
            "imagenet-vgg-m.mat; convert it once with `cqdkit convert-weights imagenet-vgg-m.mat --arch vggm`, "
            "or pass --teacher-weights/--student-weights FILE, or --no-pretrained to train from scratch"
        )
    if arch in ("convnet-s", "convnet-m"):
        raise CqdkitError(f"{arch} has no pretrained weights (it is trained from scratch); pass --no-pretrained, "
                          "or --teacher-weights/--student-weights FILE")
    from .timm_catalog import contains

    if not contains(arch):
        return {"source": "plugin"}
    return _timm_weights(arch, f" (and MatConvNet's {FILES[arch]}: {offline})" if offline else "")


def _stored(path: Path) -> dict[str, Any]:
    """Where converted weights in the weight store come from: the file, and what its sidecar says it was
    converted from."""
    source: dict[str, Any] = {"source": "file", "path": str(path), "sha256": sha256(path)}
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return source  # weights put there by hand, without a sidecar
    if isinstance(sidecar, dict) and {"source", "sha256"} <= sidecar.keys():
        source["matconvnet"] = {"source": sidecar["source"], "sha256": sidecar["sha256"]}
    return source


def _timm_weights(arch: str, note: str = "") -> dict[str, Any]:
    """timm's pretrained weights of ``arch``: from the Hugging Face cache, else downloaded; ``note`` tells
    what else was tried."""
    import timm

    ways_out = ("pass --teacher-weights/--student-weights FILE, fill the Hugging Face cache on a connected "
                "machine (HF_HOME), or pass --no-pretrained to train from scratch")
    config = timm.models.get_pretrained_cfg(arch) if timm.models.is_model_pretrained(arch) else None
    if config is None or not config.hf_hub_id:
        raise CqdkitError(f"timm has no pretrained weights for {arch!r} on the hub; {ways_out}")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(config.hf_hub_id, filename)
        if isinstance(cached, str):
            return {"source": "timm hub", "repository": config.hf_hub_id, "path": cached, "cached": True}
    try:
        path = hf_hub_download(config.hf_hub_id, "model.safetensors")
    except Exception as error:  # offline, hub unreachable, file missing: huggingface_hub's many error types
        raise CqdkitError(f"pretrained weights of {arch!r} ({config.hf_hub_id}) are not in the local cache and "
                          f"could not be downloaded ({type(error).__name__}){note}; {ways_out}") from None
    return {"source": "timm hub", "repository": config.hf_hub_id, "path": path, "cached": False}
