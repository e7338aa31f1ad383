"""Helpers for the data tests: tiny datasets written in each reader's real on-disk format.

No dataset can be downloaded in the tests, so every layout is written here, image by image, with
OpenCV/PIL and ``scipy.io.savemat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> np.ndarray:
    """Write a random RGB image (PNG or JPEG by suffix) and return what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image[:, :, ::-1])
    return image


def write_cub(root: Path, *, classes: int = 3, train: int = 2, test: int = 1, boxes: bool = True) -> Path:
    """A CUB_200_2011 folder under ``root`` with ``classes x (train + test)`` 40x30 PNG images.

    Every box is ``(2, 3, 20, 15)``. Returns the ``CUB_200_2011`` folder.
    """
    folder = root / "CUB_200_2011"
    lines: dict[str, list[str]] = {n: [] for n in ("images", "labels", "split", "boxes")}
    image_id = 0
    for c in range(1, classes + 1):
        for k in range(train + test):
            image_id += 1
            relative = f"{c:03d}.Class_{c}/img_{k}.png"
            write_image(folder / "images" / relative, seed=image_id)
            lines["images"].append(f"{image_id} {relative}")
            lines["labels"].append(f"{image_id} {c}")
            lines["split"].append(f"{image_id} {1 if k < train else 0}")
            lines["boxes"].append(f"{image_id} 2.0 3.0 20.0 15.0")
    (folder / "classes.txt").write_text("".join(f"{c} {c:03d}.Class_{c}\n" for c in range(1, classes + 1)))
    (folder / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    if boxes:
        (folder / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    return folder


def struct_array(rows: list[dict[str, Any]]) -> np.ndarray:
    """A MATLAB struct array (what ``scipy.io.savemat`` writes as ``annotations``)."""
    names = list(rows[0])
    array = np.empty(len(rows), dtype=[(n, object) for n in names])
    for i, row in enumerate(rows):
        array[i] = tuple(row[n] for n in names)
    return array


def cars_rows(split: str, count: int, first_class: int = 1, classes: int = 2) -> list[dict[str, Any]]:
    """Devkit-form annotations: uint8/uint16 fields, as the real files have; box corners (3, 4)-(22, 18)."""
    return [
        {
            "bbox_x1": np.uint8(3),
            "bbox_y1": np.uint8(4),
            "bbox_x2": np.uint16(22),
            "bbox_y2": np.uint16(18),
            "class": np.uint8((first_class - 1 + i) % classes + 1),
            "fname": f"{split}_{i:05d}.jpg",
        }
        for i in range(count)
    ]


def write_cars_devkit(root: Path, *, train: int = 4, test: int = 2, classes: int = 2) -> Path:
    """A Stanford Cars devkit-form folder (40x30 JPEG images)."""
    import scipy.io

    (root / "devkit").mkdir(parents=True)
    names = np.array([f"Car Model {c}" for c in range(1, classes + 1)], dtype=object)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    for split, count, file in (
        ("cars_train", train, root / "devkit" / "cars_train_annos.mat"),
        ("cars_test", test, root / "cars_test_annos_withlabels.mat"),
    ):
        rows = cars_rows(split, count, classes=classes)
        scipy.io.savemat(file, {"annotations": struct_array(rows)})
        for i, row in enumerate(rows):
            write_image(root / split / row["fname"], seed=i)
    return root


def write_cars_combined(root: Path, *, count: int = 6, classes: int = 2) -> Path:
    """A Stanford Cars combined-form folder: cars_annos.mat and car_ims/."""
    import scipy.io

    rows = []
    for i in range(count):
        relative = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / relative, seed=i)
        rows.append({
            "relative_im_path": relative,
            "bbox_x1": np.uint8(1), "bbox_y1": np.uint8(1), "bbox_x2": np.uint8(40), "bbox_y2": np.uint8(30),
            "class": np.uint8(i % classes + 1),
            "test": np.uint8(i % 3 == 0),
        })
    names = np.array([f"Car {c}" for c in range(1, classes + 1)], dtype=object)
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(rows), "class_names": names})
    return root


def write_folder(root: Path, *, classes: tuple[str, ...] = ("cat", "dog"), train: int = 3, test: int = 1) -> Path:
    """An image-folder dataset (PNG and JPEG mixed)."""
    for split, count in (("train", train), ("test", test)):
        for c, name in enumerate(classes):
            for k in range(count):
                write_image(root / split / name / f"{k}.{'png' if k % 2 else 'jpg'}", seed=c * 10 + k)
    return root


class ResizeMaker:
    """A stand-in PairMaker for the paired-view tests (the interface of cqdkit.degradations.PairMaker).

    x is the box crop (``crop=True``) or the image, resized to ``size``; z is x darkened by a
    seed-dependent amount, so tests can see which seed made it.
    """

    random = True
    x_random = False

    def __init__(self, size: int = 16, crop: bool = True) -> None:
        self.size = size
        self.crop = crop
        self.calls = 0

    def __call__(self, image: np.ndarray, bbox=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        self.calls += 1
        if self.crop and bbox is not None:
            x0, y0, w, h = (int(round(v)) for v in bbox)
            image = image[y0 : y0 + h, x0 : x0 + w]
        x = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        z = (x // 2 + np.uint8(seed % 100)).astype(np.uint8)
        return x, z

    def describe(self) -> dict[str, Any]:
        return {"ops": [{"name": "darken"}], "size": self.size, "crop": self.crop}
