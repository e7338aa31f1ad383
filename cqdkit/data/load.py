"""Loading a dataset by name, through the plugin manager."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import DataError, PluginError, UnknownNameError
from ..plugin import PluginManager, get_plugin_manager
from ..plugin.guard import reraise
from .records import ImageDataset

#: The dataset every command uses when none is named.
DEFAULT_DATASET = "synthetic"
#: From this many images on, loading with ``skip_bad`` or ``deep`` says that it decodes them all.
ANNOUNCE_DECODING = 2000

logger = logging.getLogger("cqdkit")


def load_dataset(
    name: str = DEFAULT_DATASET,
    root: str | os.PathLike[str] | None = None,
    *,
    skip_bad: bool = False,
    deep: bool = False,
    manager: PluginManager | None = None,
    **options: Any,
) -> ImageDataset:
    """Load the dataset ``name`` (``cub``, ``cars``, ``folder``, ``synthetic`` or a plugin's) from ``root``.

    Args:
        root: the dataset folder; optional only for datasets that need none (``synthetic``).
        skip_bad: leave bad samples out and list them in ``problems`` instead of raising; every image is
            decoded now, so that one that cannot be decoded is left out too.
        deep: also decode every image now (see :func:`cqdkit.data.verify.verify_images`); implied by
            ``skip_bad``.
        options: dataset options, e.g. ``classes=20`` for ``synthetic``; strings are converted to the
            type of the option's default (as given on a command line).

    Example:
        >>> dataset = load_dataset("synthetic", classes=12)  # doctest: +SKIP
        >>> dataset = load_dataset("cub", "~/data/CUB_200_2011")  # doctest: +SKIP

    Raises:
        UnknownNameError: no plugin provides ``name``, or an unknown option.
        DataError: ``root`` is missing for a dataset that needs it, or the data is bad.
    """
    manager = manager or get_plugin_manager()
    source = manager.dataset(name)
    if root is None and source.needs_root:
        raise DataError(f"dataset {name!r} needs a root folder: pass --root PATH (load_dataset(..., root=PATH))")
    parsed = {key: _parse_option(name, key, value, source.options) for key, value in options.items()}
    try:
        dataset = source.factory(Path(root).expanduser() if root is not None else None, skip_bad=skip_bad, **parsed)
    except Exception as error:  # a plugin's bug: one line naming it (cqdkit.plugin.guard)
        reraise(manager.provider("dataset", name), "dataset factory", error)
    if not isinstance(dataset, ImageDataset):
        raise PluginError(f"dataset {name!r}: its factory returned {type(dataset).__name__}, expected ImageDataset")
    if deep or skip_bad:
        from .verify import verify_images

        count = len(dataset.train) + len(dataset.test)
        if count >= ANNOUNCE_DECODING:
            logger.info("checking that the %d images of %s decode (%s)", count, dataset.root,
                        "--skip-bad" if skip_bad else "--deep")
        dataset = verify_images(dataset, skip_bad=skip_bad)
    _warn_about_empty_classes(dataset)
    return dataset


def _warn_about_empty_classes(dataset: ImageDataset) -> None:
    """Log a warning for each class without training images: a model can never learn it."""
    train = Counter(record.label for record in dataset.train)
    test = Counter(record.label for record in dataset.test)
    for label, name in enumerate(dataset.classes):
        if train[label]:
            continue
        what = f"no training images ({test[label]} test images)" if test[label] else "no images"
        logger.warning("dataset %s (%s): class %r (label %d) has %s; a model can never learn it",
                       dataset.name, dataset.root, name, label, what)


def _parse_option(dataset: str, key: str, value: Any, known: dict[str, Any]) -> Any:
    if key not in known:
        raise UnknownNameError(f"option of dataset {dataset!r}", key, known)
    default = known[key]
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        try:
            return type(default)(value)
        except ValueError:
            raise DataError(
                f"dataset {dataset!r} option {key}={value!r}: expected a {type(default).__name__}"
            ) from None
    return value
