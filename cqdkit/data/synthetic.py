"""The embedded synthetic fine-grained dataset: generated once, cached in the CUB layout.

Every class is a combination of three attributes, so no single cue names a class:

* **body colour** -- hues of equal luminance, each shared by several classes (an edge map loses it);
* **fine pattern** on the body, in one dark grey -- thin stripes at 0 deg, thin stripes at 15 deg, or small
  dots, all about half covered so that their mean colour is nearly the same (a low-resolution copy
  loses it);
* **outline** -- straight edges or slightly bent ones (a thin-plate-spline jitter blurs the difference,
  and it also jitters the stripe angle).

The object is placed at a random position and scale (50-75 % of the image side), facing left or right,
on a cluttered background of distractor pieces painted with the same colours and patterns (and a cut-off
look-alike body), so that recognising the full image (instead of the box crop) is much harder. Boxes are the exact pixel extent of
the object.

Images are generated with numpy and OpenCV, deterministically from the seed (each image from its own
seed, so adding images never changes the others), and written once into the cache folder
(``$CQDKIT_CACHE/synthetic/<version and parameters>``, atomically) in the CUB layout, where
:func:`cqdkit.data.cub.read_cub` reads them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cache import default_cache_dir
from .cub import read_cub
from .records import ImageDataset

#: Bump when the generator changes, so old caches are not reused.
VERSION = 4

#: Equal-luminance body colours (CIELAB L=60, chroma 45), RGB.
PALETTE: dict[str, tuple[int, int, int]] = {
    "coral": (216, 116, 108),
    "green": (76, 161, 104),
    "blue": (67, 149, 224),
    "olive": (168, 142, 63),
    "teal": (0, 164, 184),
    "violet": (191, 120, 186),
}
PATTERNS = ("stripes0", "stripes15", "dots")
OUTLINES = ("straight", "bent")
MAX_CLASSES = len(PALETTE) * len(PATTERNS) * len(OUTLINES)

#: Bend of a "bent" outline, as a fraction of the body height.
BEND = 0.05
#: Pattern period, as a fraction of the body length.
PERIOD = 1 / 22
#: The angle of the tilted stripes, degrees (mirrored when the object faces left).
STRIPE_ANGLE = 15.0
#: The pattern colour: one dark grey for every body colour, so that stripe edges look alike in every hue.
PATTERN_COLOUR = (60.0, 60.0, 60.0)


@dataclass(frozen=True)
class SyntheticSpec:
    """The generator's parameters (the defaults keep a CPU training run to minutes)."""

    classes: int = 12
    train_per_class: int = 40
    test_per_class: int = 25
    image_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= MAX_CLASSES:
            raise DataError(f"synthetic dataset: classes={self.classes}; expected 2 to {MAX_CLASSES}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise DataError("synthetic dataset: train_per_class and test_per_class must be at least 1")
        if not 32 <= self.image_size <= 1024:
            raise DataError(f"synthetic dataset: image_size={self.image_size}; expected 32 to 1024 pixels")

    @property
    def folder_name(self) -> str:
        return (
            f"v{VERSION}-c{self.classes}-tr{self.train_per_class}-te{self.test_per_class}"
            f"-s{self.image_size}-seed{self.seed}"
        )


def class_attributes(classes: int) -> list[tuple[str, str, str]]:
    """``(colour, pattern, outline)`` of each class; colours are shared by groups of six classes."""
    colours = list(PALETTE)[: -(-classes // (len(PATTERNS) * len(OUTLINES)))]
    combos = [(c, p, o) for c, (p, o) in itertools.product(colours, itertools.product(PATTERNS, OUTLINES))]
    return combos[:classes]


def load_synthetic(root: str | os.PathLike[str] | None = None, *, skip_bad: bool = False, **options: int) -> ImageDataset:
    """The synthetic dataset, generated into ``root`` (default: the cache folder) on first use.

    Options are the fields of :class:`SyntheticSpec` (``classes``, ``train_per_class``,
    ``test_per_class``, ``image_size``, ``seed``).
    """
    return read_cub(ensure_synthetic(SyntheticSpec(**options), root), skip_bad=skip_bad, name="synthetic")


def ensure_synthetic(spec: SyntheticSpec, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``spec``'s images in the CUB layout, generating it if needed (atomically)."""
    parent = Path(root).expanduser() if root is not None else default_cache_dir() / "synthetic"
    target = parent / spec.folder_name
    if (target / "images.txt").is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{spec.folder_name}-"))
    try:
        write_synthetic(spec, temporary)
        os.rename(temporary, target)
    except OSError:
        if not (target / "images.txt").is_file():  # another process did not win the race: a real error
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def write_synthetic(spec: SyntheticSpec, folder: Path) -> None:
    """Generate every image of ``spec`` and its annotations into ``folder`` (CUB layout)."""
    import cv2

    attributes = class_attributes(spec.classes)
    names = [f"{k + 1:03d}.{'_'.join(a)}" for k, a in enumerate(attributes)]
    images, labels, splits, boxes = [], [], [], []
    for label, name in enumerate(names):
        (folder / "images" / name).mkdir(parents=True)
        for split, count in ((1, spec.train_per_class), (0, spec.test_per_class)):
            for index in range(count):
                rng = np.random.default_rng([spec.seed, label, split, index])
                image, box = draw_sample(attributes[label], spec.image_size, rng)
                relative = f"{name}/{'train' if split else 'test'}_{index:04d}.png"
                cv2.imwrite(str(folder / "images" / relative), image[:, :, ::-1])
                images.append(relative)
                labels.append(label + 1)
                splits.append(split)
                boxes.append(box)
    ids = range(1, len(images) + 1)
    _write_lines(folder / "classes.txt", (f"{k + 1} {n}" for k, n in enumerate(names)))
    _write_lines(folder / "images.txt", (f"{i} {p}" for i, p in zip(ids, images)))
    _write_lines(folder / "image_class_labels.txt", (f"{i} {c}" for i, c in zip(ids, labels)))
    _write_lines(folder / "train_test_split.txt", (f"{i} {s}" for i, s in zip(ids, splits)))
    _write_lines(folder / "bounding_boxes.txt", (f"{i} {x} {y} {w} {h}" for i, (x, y, w, h) in zip(ids, boxes)))


def draw_sample(
    attributes: tuple[str, str, str], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One ``size x size`` RGB image of a class with the given attributes, and the object's exact box."""
    colour, pattern, outline = attributes
    canvas = _background(size, rng)
    grid = _grid(size)
    for _ in range(int(rng.integers(7, 13))):
        _paint_distractor(canvas, grid, rng)

    length = size * rng.uniform(0.5, 0.75)
    height = length * rng.uniform(0.5, 0.62)
    _paint_decoy(canvas, grid, length, rng)
    left = rng.uniform(1, size - length - 1)
    top = rng.uniform(1, size - height - 1)
    facing = 1 if rng.random() < 0.5 else -1
    points = _body_outline(outline == "bent", length, height, facing) + (left, top)
    texture = Texture(pattern, length * PERIOD, 0.0 if pattern == "stripes0" else STRIPE_ANGLE * facing, rng.uniform(0, 1))
    window, mask = _paint(canvas, grid, points, np.asarray(PALETTE[colour], np.float32), texture)

    ys, xs = np.nonzero(mask > 0.5)
    y0, x0 = window[0].start, window[1].start
    box = (int(x0 + xs.min()), int(y0 + ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), box


@dataclass(frozen=True)
class Texture:
    """A fine pattern: thin stripes at ``angle`` degrees or a lattice of dots, ``period`` pixels apart."""

    kind: str
    period: float
    angle: float
    phase: float  # fraction of a period

    def coverage(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Where the pattern colour goes (float32 in [0, 1], anti-aliased)."""
        period, shift = self.period, self.phase * self.period
        if self.kind == "dots":
            u = np.mod(x + shift, period) - period / 2
            v = np.mod(y + shift, period) - period / 2
            return np.clip(0.4 * period - np.sqrt(u * u + v * v) + 0.5, 0, 1)  # half covered, like stripes
        theta = np.deg2rad(self.angle)
        across = np.mod(y * np.cos(theta) - x * np.sin(theta) + shift, period)  # position across the stripes
        distance = np.minimum(np.abs(across - period / 4), np.abs(across - period * 1.25))
        return np.clip(period / 4 - distance + 0.5, 0, 1)  # stripes half a period wide


@lru_cache(maxsize=4)
def _grid(size: int) -> np.ndarray:
    """Pixel coordinates ``(y, x)``, shape ``(2, size, size)``."""
    return np.mgrid[0:size, 0:size].astype(np.float32)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth low-saturation colour noise with a little grain."""
    import cv2

    coarse = rng.uniform(90, 200, (5, 5, 1)) + rng.uniform(-25, 25, (5, 5, 3))
    smooth = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return smooth + rng.normal(0, 3, (size, size, 3)).astype(np.float32)


def _random_texture(rng: np.random.Generator, period: float) -> Texture | None:
    if rng.random() < 0.4:
        return None
    return Texture(PATTERNS[int(rng.integers(len(PATTERNS)))], period, rng.uniform(0, 180), rng.uniform(0, 1))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.7:
        return np.asarray(list(PALETTE.values())[int(rng.integers(len(PALETTE)))], np.float32)
    return rng.uniform(40, 220, 3).astype(np.float32)


def _paint_distractor(canvas: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> None:
    """A random polygon piece in a palette (or random) colour, often with one of the patterns."""
    size = canvas.shape[0]
    radius = size * rng.uniform(0.05, 0.16)
    corners = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radii = radius * rng.uniform(0.6, 1.3, corners)
    points = rng.uniform(0, size, 2) + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    _paint(canvas, grid, points, _random_colour(rng), _random_texture(rng, size * rng.uniform(0.025, 0.045)))


def _paint_decoy(canvas: np.ndarray, grid: np.ndarray, length: float, rng: np.random.Generator) -> None:
    """Part of another body (cut by a straight line), about the object's size: a look-alike in the clutter."""
    size = canvas.shape[0]
    decoy_length = length * rng.uniform(0.6, 1.0)
    decoy_height = decoy_length * rng.uniform(0.5, 0.62)
    points = _body_outline(rng.random() < 0.5, decoy_length, decoy_height, 1 if rng.random() < 0.5 else -1)
    keep = points[:, 0] <= decoy_length * rng.uniform(0.35, 0.6)  # the head end only
    if rng.random() < 0.5:
        keep = ~keep
    points = points[keep] + rng.uniform(-0.3 * decoy_length, size - 0.4 * decoy_length, 2)
    _paint(canvas, grid, points, _random_colour(rng), _random_texture(rng, decoy_length * PERIOD))


def _body_outline(bent: bool, length: float, height: float, facing: int) -> np.ndarray:
    """The body polygon in pixels, relative to its top-left corner: a pointed head and a blunt tail.

    A bent body's long edges bow outwards by :data:`BEND` times the height.
    """
    t = np.linspace(0, 1, 24)
    bow = BEND * height * np.sin(np.pi * t) if bent else np.zeros_like(t)
    shoulder = 0.28  # where the head ends, as a fraction of the length
    upper = np.stack([shoulder + (1 - shoulder) * t, 0.12 * t], 1) * (length, height)
    upper[:, 1] -= bow
    lower = np.stack([1 - (1 - shoulder) * t, 1.0 - 0.12 * t], 1) * (length, height)
    lower[:, 1] += bow
    points = np.concatenate([[[0.0, 0.5 * height]], upper, lower])
    pad = BEND * height  # keep the bow inside the placement rectangle
    points[:, 1] = (points[:, 1] + pad) * height / (height + 2 * pad)
    if facing < 0:
        points[:, 0] = length - points[:, 0]
    return points


def _paint(
    canvas: np.ndarray, grid: np.ndarray, points: np.ndarray, colour: np.ndarray, texture: Texture | None
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Paint a polygon (anti-aliased) in ``colour``, with :data:`PATTERN_COLOUR` where ``texture`` covers it.

    Works on the polygon's bounding window only; returns the window and the coverage mask within it.
    """
    import cv2

    size = canvas.shape[0]
    x0, y0 = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, size - 1)
    x1, y1 = np.clip(np.ceil(points.max(0)).astype(int) + 2, 1, size)
    window = (slice(y0, y1), slice(x0, x1))
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4
    corners = np.rint((points - (x0, y0)) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [corners], 255, cv2.LINE_AA, shift)
    coverage = mask.astype(np.float32) / 255.0
    fill = np.broadcast_to(colour, (*coverage.shape, 3))
    if texture is not None:
        pattern = texture.coverage(grid[0][window], grid[1][window])
        fill = fill + pattern[:, :, None] * (np.asarray(PATTERN_COLOUR, np.float32) - fill)
    region = canvas[window]
    region += coverage[:, :, None] * (fill - region)
    return window, coverage


def _write_lines(path: Path, lines) -> None:  # noqa: ANN001 (any iterable of str)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
