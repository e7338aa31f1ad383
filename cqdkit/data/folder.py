"""Reader for a plain image folder: one sub-folder per class, split into train/ and test/.

Layout::

    ROOT/train/<class name>/<image>    any of .jpg .jpeg .png .bmp .gif .tif .tiff .webp .ppm .pgm
    ROOT/test/<class name>/<image>
    ROOT/bboxes.csv                    optional: header 'path,x,y,width,height', path relative to ROOT,
                                       boxes 0-based (x, y, width, height) pixels as in CUB

Classes are the sub-folders of ``train/``, sorted by name. Hidden files and files with other extensions
are ignored. Names that are not UTF-8 are read (the bytes of such a name show as ``\\xNN`` in class
names, record ids and messages; ``bboxes.csv`` may name them in the same bytes).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import DataError
from ..files import open_regular, regular_file_problem
from ..images import IMAGE_EXTENSIONS
from .problems import Problems
from .records import Box, ImageDataset, Record, printable

BOX_COLUMNS = ("path", "x", "y", "width", "height")


def read_folder(root: str | os.PathLike[str], *, skip_bad: bool = False) -> ImageDataset:
    """Read ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (and ``ROOT/bboxes.csv`` if present).

    Raises:
        DataError: no train/ or test/ folder, an empty class folder, a test class missing from train/, or a
            bad ``bboxes.csv`` line; with ``skip_bad=True`` bad samples are left out and listed.
    """
    root = Path(root).expanduser()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(
                f"{root} is not an image folder dataset: expected {root / split}/<class name>/<images>"
            )
    problems = Problems(skip_bad)
    refused: set[Path] = set()  # image files reported already (their bboxes.csv line is no news)
    train_folders = _class_folders(root / "train", problems, refused)
    classes = sorted(train_folders)
    if not classes:
        raise DataError(f"{root / 'train'}: expected one sub-folder of images per class, found none")
    test_folders = _class_folders(root / "test", problems, refused)
    for name in sorted(set(test_folders) - set(classes)):
        problems.report(f"{test_folders[name][0].parent}: class {name!r} has no train/ folder")
    has_boxes = (root / "bboxes.csv").exists()  # a FIFO or folder by that name: refused when read
    boxes = _read_boxes(root, problems) if has_boxes else {}  # {image id: (where, box or None if bad)}
    for path in refused:
        boxes.pop(path.relative_to(root).as_posix(), None)
    splits = []
    for folders in (train_folders, test_folders):
        records = []
        for label, name in enumerate(classes):
            for path in folders.get(name, []):
                image_id = path.relative_to(root).as_posix()
                where, bbox = boxes.pop(image_id, ("", None))
                if where and bbox is None:
                    continue  # its bboxes.csv line was bad (already reported)
                if has_boxes and not where:
                    where = f"no line in {root / 'bboxes.csv'}"  # no box: said when one is needed
                records.append(Record(printable(image_id), path, label, bbox, where))
        splits.append(records)
    for image_id in sorted(boxes):
        problems.report(f"{root / 'bboxes.csv'}: box for {image_id!r}, which is not an image of train/ or test/")
    names = [printable(name) for name in classes]
    return ImageDataset("folder", root, names, splits[0], splits[1], has_boxes, problems.found)


def _class_folders(split: Path, problems: Problems, refused: set[Path]) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` for the non-empty class folders of ``split``.

    Files named like images that cannot be read as one (a link to nothing, a named pipe, a device, a
    folder) are reported and added to ``refused``.
    """
    folders: dict[str, list[Path]] = {}
    for folder in sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith(".")):
        named = [p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
        images = []
        for path in sorted(named):
            if path.is_symlink() and not path.exists():
                problems.report(f"{path}: a link to {os.readlink(path)}, which does not exist; expected an image file")
                refused.add(path)
                continue
            problem = regular_file_problem(path, "an image file")  # a named pipe x.jpg would hang a reader
            if problem:
                problems.report(problem)
                refused.add(path)
            else:
                images.append(path)
        if not images:
            problems.report(f"{folder}: class folder is empty; expected image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            continue
        folders[folder.name] = images
    return folders


def _read_boxes(root: Path, problems: Problems) -> dict[str, tuple[str, Box | None]]:
    """``{path relative to root: (where, box)}``; the box is None when its line is bad (and reported).

    A second line for the same image is a bad line (even with the same box), and the image is left out.
    """
    path = root / "bboxes.csv"
    boxes: dict[str, tuple[str, Box | None]] = {}
    first: dict[str, int] = {}  # image -> the number of its first line
    with open_regular(path, "a CSV file of boxes", "r", newline="", encoding="utf-8-sig",
                      errors="surrogateescape") as file:
        rows = csv.reader(file)
        header = [c.strip() for c in next(rows, [])]
        if tuple(header) != BOX_COLUMNS:
            raise DataError(f"{path} line 1: expected the header {','.join(BOX_COLUMNS)}, got {','.join(header)!r}")
        for number, row in enumerate(rows, 2):
            where = f"{path} line {number}"
            if not row or not "".join(row).strip():
                continue
            image = Path(row[0].strip()).as_posix()
            if image in first:
                problems.report(f"{where}: a second line for {image!r} (the first is line {first[image]}); "
                                "expected one box per image")
                boxes[image] = (where, None)
                continue
            first[image] = number
            if len(row) != len(BOX_COLUMNS):
                problems.report(f"{where}: expected {len(BOX_COLUMNS)} fields {','.join(BOX_COLUMNS)}, got {len(row)}")
                boxes[image] = (where, None)
                continue
            try:
                x, y, width, height = (float(v) for v in row[1:])
            except ValueError:
                problems.report(f"{where}: expected numbers for x,y,width,height, got {','.join(row[1:])!r}")
                boxes[image] = (where, None)
                continue
            boxes[image] = (where, problems.check_box((x, y, width, height), where))
    return boxes
