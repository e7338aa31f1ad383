"""Reader for the CUB-200-2011 layout (also what the synthetic dataset is written in).

Layout (ids and class ids are 1-based; ``ROOT`` may be the ``CUB_200_2011`` folder or its parent)::

    ROOT/images.txt               <image id> <path under images/>
    ROOT/image_class_labels.txt   <image id> <class id>
    ROOT/train_test_split.txt     <image id> <1 = train, 0 = test>
    ROOT/bounding_boxes.txt       <image id> <x> <y> <width> <height>   (optional; float pixels)
    ROOT/classes.txt              <class id> <class name>
    ROOT/images/...
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from ..files import open_regular, regular_file_problem
from .problems import Problems
from .records import Box, ImageDataset, Record, printable

REQUIRED = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
BOXES = "bounding_boxes.txt"
#: CUB's segmentation release (segmentations.tgz), unpacked next to images/: one PNG mask per image.
SEGMENTATIONS = "segmentations"


def find_cub_root(root: str | os.PathLike[str]) -> Path:
    """The folder holding ``images.txt``: ``root`` itself or ``root/CUB_200_2011``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").exists():  # a FIFO or folder by that name: refused when read
            return candidate
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (expected a CUB_200_2011 folder)" if not root.exists() else
                        f"{root}: expected a CUB_200_2011 folder, found a file")
    raise DataError(
        f"{root} is not a CUB-200-2011 folder: expected {', '.join(REQUIRED)} and images/ in it "
        f"or in {root / 'CUB_200_2011'}"
    )


def read_cub(root: str | os.PathLike[str], *, skip_bad: bool = False, name: str = "cub") -> ImageDataset:
    """Read a CUB-200-2011 folder.

    Checks every annotation and that every listed file exists; images are decoded later, lazily.

    Raises:
        DataError: the first bad line or missing file (``skip_bad=False``), naming file, line and what
            was expected; with ``skip_bad=True`` bad samples are left out and listed in ``problems``.
    """
    root = find_cub_root(root)
    for file_name in REQUIRED:
        if not (root / file_name).exists():
            raise DataError(f"{root} is not a CUB-200-2011 folder: {file_name} is missing")
    problems = Problems(skip_bad)
    rejected: set[str] = set()  # image ids whose bad lines were reported already

    class_ids: dict[str, int] = {}
    classes: list[str] = []
    for where, fields in _lines(root, "classes.txt", 2, "<class id> <class name>", problems, set(), text_last=True):
        if fields[0] in class_ids:
            raise DataError(f"{where}: class id {fields[0]} appears twice")
        class_ids[fields[0]] = len(classes)
        classes.append(printable(fields[1]))
    if not classes:
        raise DataError(f"{root / 'classes.txt'}: expected one '<class id> <class name>' line per class")

    paths = dict(_id_table(root, "images.txt", "<image id> <path>", problems, rejected, text_last=True))
    _reject_shared_files(paths, problems, rejected)
    labels = dict(_id_table(root, "image_class_labels.txt", "<image id> <class id>", problems, rejected))
    is_train = dict(_id_table(root, "train_test_split.txt", "<image id> <is_train 0 or 1>", problems, rejected))
    has_boxes = (root / BOXES).exists()
    boxes: dict[str, tuple[str, Box]] = {}
    if has_boxes:
        seen: dict[str, str] = {}
        for where, fields in _lines(root, BOXES, 5, "<image id> <x> <y> <width> <height>", problems, rejected):
            if fields[0] in seen:
                _report_twice(where, fields[0], seen[fields[0]], problems, rejected)
                continue
            seen[fields[0]] = where
            box = _parse_box(fields[1:], where, problems)
            if box is None:
                rejected.add(fields[0])
            else:
                boxes[fields[0]] = (where, box)

    train: list[Record] = []
    test: list[Record] = []
    for image_id, (where, relative) in paths.items():
        if image_id in rejected:
            continue
        record = _record(root, image_id, where, relative, labels, is_train, boxes, has_boxes, class_ids, problems)
        if record is not None:
            (train if is_train[image_id][1] == "1" else test).append(record)
    return ImageDataset(name, root, classes, train, test, has_boxes, problems.found)


def _record(
    root: Path,
    image_id: str,
    where: str,
    relative: str,
    labels: dict[str, tuple[str, str]],
    is_train: dict[str, tuple[str, str]],
    boxes: dict[str, tuple[str, Box]],
    has_boxes: bool,
    class_ids: dict[str, int],
    problems: Problems,
) -> Record | None:
    """The record of one image id, or None (after reporting) when anything about it is wrong."""
    if image_id not in labels:
        problems.report(f"{where}: image id {image_id} has no line in image_class_labels.txt")
        return None
    label_where, class_id = labels[image_id]
    if class_id not in class_ids:
        problems.report(
            f"{label_where}: class id {class_id} is out of range (classes.txt defines {len(class_ids)} classes)"
        )
        return None
    if image_id not in is_train or is_train[image_id][1] not in ("0", "1"):
        split_where = is_train[image_id][0] if image_id in is_train else "train_test_split.txt"
        problems.report(f"{split_where}: image id {image_id} needs an is_train flag of 0 or 1")
        return None
    bbox = None
    if has_boxes:
        if image_id not in boxes:
            problems.report(f"{root / BOXES}: no valid box for image id {image_id}")
            return None
        bbox = boxes[image_id][1]
    path = root / "images" / relative
    if not path.exists():
        problems.report(f"{where}: image file {path} is missing")
        return None
    problem = regular_file_problem(path, "an image file")
    if problem:
        problems.report(f"{where}: {problem}")
        return None
    mask = (root / SEGMENTATIONS / relative).with_suffix(".png")
    annotations = {"mask": mask} if mask.exists() else {}  # not a regular file: refused when read
    origin = f"{where}, box at {boxes[image_id][0]}" if bbox is not None else where
    return Record(printable(image_id), path, class_ids[class_id], bbox, origin, annotations)


def _lines(
    root: Path,
    file_name: str,
    count: int,
    expected: str,
    problems: Problems,
    rejected: set[str],
    *,
    text_last: bool = False,
) -> Iterator[tuple[str, list[str]]]:
    """``(where, fields)`` for each good non-blank line of ``root/file_name``.

    Bad lines are reported, and their first field (the image id) added to ``rejected``. With
    ``text_last`` the last field is free text that may contain spaces (a path, a class name).

    Files are UTF-8 (a byte-order mark is skipped); bytes that are not UTF-8 are kept as surrogate
    escapes, as ``os.fsdecode`` keeps them, so a path in another encoding (say a Latin-1 ``café.jpg``)
    finds the file that has exactly those bytes as its name.
    """
    path = root / file_name
    with open_regular(path, "a text file of annotations", "r", encoding="utf-8-sig", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=count - 1) if text_last else line.split()
            where = f"{path} line {number}"
            if len(fields) != count:
                problems.report(f"{where}: expected {count} fields '{expected}', got {line.strip()!r}")
                rejected.update(fields[:1])
                continue
            yield where, [f.strip() for f in fields]


def _id_table(
    root: Path, file_name: str, expected: str, problems: Problems, rejected: set[str], *, text_last: bool = False
) -> Iterator[tuple[str, tuple[str, str]]]:
    """``(image id, (where, value))`` for a two-column file keyed by image id.

    An image id on a second line is a bad line, even with the same value: the image is left out.
    """
    seen: dict[str, str] = {}
    for where, (image_id, value) in _lines(root, file_name, 2, expected, problems, rejected, text_last=text_last):
        if image_id in seen:
            _report_twice(where, image_id, seen[image_id], problems, rejected)
            continue
        seen[image_id] = where
        yield image_id, (where, value)


def _report_twice(where: str, image_id: str, first: str, problems: Problems, rejected: set[str]) -> None:
    """Report a second line for ``image_id`` (its first was ``first``), and reject the image."""
    rejected.add(image_id)
    problems.report(f"{where}: image id {image_id} appears twice (first on line {_line_number(first)}); "
                    "expected one line per image")


def _line_number(where: str) -> str:
    return where.rsplit(" line ", 1)[-1]


def _reject_shared_files(paths: dict[str, tuple[str, str]], problems: Problems, rejected: set[str]) -> None:
    """Report image ids of ``images.txt`` that name the same file (which label and split would it have?)."""
    first: dict[str, str] = {}
    for image_id, (where, relative) in paths.items():
        name = Path(relative).as_posix()
        if name not in first:
            first[name] = image_id
            continue
        other = first[name]
        rejected.update((image_id, other))
        problems.report(f"{where}: image id {image_id} names the file {relative!r} of image id {other} "
                        f"(line {_line_number(paths[other][0])}); expected each image file once")


def _parse_box(fields: list[str], where: str, problems: Problems) -> Box | None:
    try:
        x, y, width, height = (float(f) for f in fields)
    except ValueError:
        problems.report(f"{where}: expected four numbers 'x y width height', got {' '.join(fields)!r}")
        return None
    return problems.check_box((x, y, width, height), where)
