"""The embedded synthetic fine-grained dataset: generated once, cached in the CUB layout.

Every class is a combination of three attributes, each aimed at one of the paper's degradations, so no
single degradation removes every cue:

* **body colour** -- hues of nearly equal grey level, each shared by several classes (an edge map keeps
  only a faint trace of it);
* **fine pattern** on the body, in one dark grey -- thin stripes, a checkerboard or dots, all half
  covered and with about :data:`CYCLES` periods across the object's box along each axis: in a box crop
  stretched to 64 pixels that is one period per 4.6 pixels, what ``lowres`` averages into one of its 14
  pixels, so a low-resolution copy keeps only a faint moire of it;
* **spacing** of the pattern -- even, or uneven: each stripe, row, column or dot moved by a random
  :data:`JITTER` of a period (about half a pixel in a 64-pixel crop). A thin-plate-spline jitter of the
  same size makes even patterns uneven too, so only the amount of unevenness is left to tell them apart.

The pattern is laid out in the box's own coordinates (its period is a fixed fraction of the box's width
and height), so the stretched box crop shows it at the same scale whatever the object's size.

The object is placed at a random position and scale (55-80 % of the image side), facing left or right,
on a cluttered background of distractor pieces painted with the same colours and patterns (and a cut-off
look-alike body), so that recognising the full image (instead of the box crop) is much harder. Boxes are
the exact pixel extent of the object, and each image's segmentation mask (the object's anti-aliased
coverage, 255 inside) is written as a gray PNG in CUB's ``segmentations/`` layout and offered as the
records' ``"mask"`` annotation (:attr:`cqdkit.data.Record.annotations`).

Images are generated with numpy and OpenCV, deterministically from the seed (each image from its own
seed, so adding images never changes the others), and written once into the cache folder
(``$CQDKIT_CACHE/synthetic/<version and parameters>``, atomically) in the CUB layout, where
:func:`cqdkit.data.cub.read_cub` reads them.

Adding the masks left the images byte-identical to those of earlier versions: the mask comes from the
body's rasterisation, which draws no random numbers.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from ..files import default_cache_dir
from .cub import SEGMENTATIONS, read_cub
from .records import ImageDataset

#: Bump when the generator changes, so old caches are not reused.
VERSION = 5

#: Body colours of nearly equal grey level (BT.601 luma 131-139, what an edge detector sees), RGB. The
#: small differences leave a faint trace of the colour in a line drawing (in the pattern's edge strength).
PALETTE: dict[str, tuple[int, int, int]] = {
    "coral": (210, 110, 102),  # luma 139
    "green": (78, 163, 106),  # 131
    "blue": (71, 153, 228),  # 137
    "olive": (160, 134, 55),  # 133
    "teal": (22, 186, 206),  # 139
    "violet": (173, 102, 168),  # 131
}
PATTERNS = ("stripes", "checks", "dots")
SPACINGS = ("even", "uneven")
MAX_CLASSES = len(PALETTE) * len(PATTERNS) * len(SPACINGS)

#: Pattern periods across the object's box, along each axis (drawn per image around this value). With
#: 64-pixel views ``lowres`` keeps round(50/224 * 64) = 14 pixels, each averaging one whole period.
CYCLES = 14.0
#: Half-width of the per-image range of :data:`CYCLES`: the mismatch leaves a faint moire in ``lowres``.
CYCLES_SPREAD = 1.0
#: Standard deviation of the random offset of each stripe, row or column of an "uneven" pattern, in
#: periods (about 0.55 pixel in a 64-pixel crop, like the tps jitter there); clipped to +-2 deviations.
JITTER = 0.12
#: The pattern colour: one dark grey for every body colour, so that pattern edges look alike in every hue.
PATTERN_COLOUR = (60.0, 60.0, 60.0)
#: Bend of the body's long edges, as a fraction of its height (the same for every class).
BEND = 0.05


#: Where the segmentation masks go, mirroring ``images/`` (CUB-200-2011's segmentation layout).

#: Part of the cache folder's name: editing the generator regenerates the data even without a VERSION bump.
_GENERATOR_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


#: The most images per class and split the generator makes (each is written to the cache folder).
MAX_PER_CLASS = 10_000


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
        for name in ("train_per_class", "test_per_class"):
            if not 1 <= getattr(self, name) <= MAX_PER_CLASS:
                raise DataError(f"synthetic dataset: {name}={getattr(self, name)}; expected 1 to {MAX_PER_CLASS}")
        if not 0 <= self.seed < 2**32:
            raise DataError(f"synthetic dataset: seed={self.seed}; expected 0 to 2**32 - 1 (a random generator's seed)")
        if not 32 <= self.image_size <= 1024:
            raise DataError(f"synthetic dataset: image_size={self.image_size}; expected 32 to 1024 pixels")

    @property
    def folder_name(self) -> str:
        return (
            f"v{VERSION}-{_GENERATOR_HASH}-c{self.classes}-tr{self.train_per_class}-te{self.test_per_class}"
            f"-s{self.image_size}-seed{self.seed}"
        )


def class_attributes(classes: int) -> list[tuple[str, str, str]]:
    """``(colour, pattern, spacing)`` of each class; colours are shared by groups of six classes.

    Example:
        >>> class_attributes(7)[5:]
        [('coral', 'dots', 'uneven'), ('green', 'stripes', 'even')]
    """
    group = len(PATTERNS) * len(SPACINGS)
    colours = list(PALETTE)[: -(-classes // group)]
    combos = [(c, p, e) for c, (p, e) in itertools.product(colours, itertools.product(PATTERNS, SPACINGS))]
    return combos[:classes]


def load_synthetic(root: str | os.PathLike[str] | None = None, *, skip_bad: bool = False, **options: int) -> ImageDataset:
    """The synthetic dataset, generated into ``root`` (default: the cache folder) on first use.

    Options are the fields of :class:`SyntheticSpec` (``classes``, ``train_per_class``,
    ``test_per_class``, ``image_size``, ``seed``). Every record has a ``"mask"`` annotation.
    """
    return read_cub(ensure_synthetic(SyntheticSpec(**options), root), skip_bad=skip_bad, name="synthetic")


def mask_path(root: Path, image: Path) -> Path:
    """Where the segmentation mask of ``image`` (a file under ``root/images``) is stored.

    Example:
        >>> mask_path(Path("/d"), Path("/d/images/001.a/train_0000.png")).as_posix()
        '/d/segmentations/001.a/train_0000.png'
    """
    return (root / SEGMENTATIONS / image.relative_to(root / "images")).with_suffix(".png")  # as cub reads it


def ensure_synthetic(spec: SyntheticSpec, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``spec``'s images in the CUB layout, generating it if needed (atomically)."""
    parent = Path(root).expanduser() if root is not None else default_cache_dir() / "synthetic"
    target = parent / spec.folder_name
    if (target / "images.txt").is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(parent, spec.folder_name)
    temporary = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{spec.folder_name}-"))
    with open(temporary / GENERATING, "w") as claim:
        fcntl.flock(claim.fileno(), fcntl.LOCK_EX)  # held while this process writes (released if it dies)
        try:
            write_synthetic(spec, temporary)
            (temporary / GENERATING).unlink()
            os.rename(temporary, target)
        except OSError:
            if not (target / "images.txt").is_file():  # another process did not win the race: a real error
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return target


#: The file a generating process holds locked inside its temporary folder.
GENERATING = ".generating"


def _remove_abandoned(parent: Path, folder_name: str) -> None:
    """Delete the temporary folders of generators that died (``kill -9``) before finishing: no live process
    holds their lock. A folder still being written by a live process is left alone."""
    for folder in parent.glob(f".tmp-{folder_name}-*"):
        try:
            with open(folder / GENERATING) as claim:
                fcntl.flock(claim.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: a live generator; no claim (yet): one that is just starting
            continue
        shutil.rmtree(folder, ignore_errors=True)


def write_synthetic(spec: SyntheticSpec, folder: Path) -> None:
    """Generate every image of ``spec`` and its annotations into ``folder`` (CUB layout)."""
    import cv2

    attributes = class_attributes(spec.classes)
    names = [f"{k + 1:03d}.{'_'.join(a)}" for k, a in enumerate(attributes)]
    images, labels, splits, boxes = [], [], [], []
    for label, name in enumerate(names):
        (folder / "images" / name).mkdir(parents=True)
        (folder / SEGMENTATIONS / name).mkdir(parents=True)
        for split, count in ((1, spec.train_per_class), (0, spec.test_per_class)):
            for index in range(count):
                rng = np.random.default_rng([spec.seed, label, split, index])
                image, box, mask = render_sample(attributes[label], spec.image_size, rng)
                relative = f"{name}/{'train' if split else 'test'}_{index:04d}.png"
                # encoded in memory: cv2.imwrite cannot take every path (a cache folder that is not UTF-8)
                (folder / "images" / relative).write_bytes(cv2.imencode(".png", image[:, :, ::-1])[1].tobytes())
                mask_path(folder, folder / "images" / relative).write_bytes(cv2.imencode(".png", mask)[1].tobytes())
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


class SyntheticSample(NamedTuple):
    """One generated image with its annotations."""

    image: np.ndarray  # size x size x 3 uint8 RGB
    box: tuple[int, int, int, int]  # the object's exact pixel extent (x, y, width, height)
    mask: np.ndarray  # size x size uint8: the object's coverage, 255 inside, soft at the outline


def draw_sample(
    attributes: tuple[str, str, str], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One ``size x size`` RGB image of a class with the given attributes, and the object's exact box."""
    return render_sample(attributes, size, rng)[:2]


def render_sample(attributes: tuple[str, str, str], size: int, rng: np.random.Generator) -> SyntheticSample:
    """Like :func:`draw_sample`, with the object's segmentation mask (the same random draws, the same image)."""
    colour, pattern, spacing = attributes
    canvas = _background(size, rng)
    grid = _grid(size)
    for _ in range(int(rng.integers(7, 13))):
        _paint_distractor(canvas, grid, rng)

    length = size * rng.uniform(0.55, 0.8)
    height = length * rng.uniform(0.62, 0.8)
    _paint_decoy(canvas, grid, length, rng)
    left = rng.uniform(1, size - length - 1)
    top = rng.uniform(1, size - height - 1)
    facing = 1 if rng.random() < 0.5 else -1
    window, mask = _rasterise(_body_outline(length, height, facing) + (left, top), size)
    ys, xs = np.nonzero(mask > 0.5)
    y0, x0 = window[0].start, window[1].start
    box = (int(x0 + xs.min()), int(y0 + ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    cycles = rng.uniform(CYCLES - CYCLES_SPREAD, CYCLES + CYCLES_SPREAD)
    origin = (box[0] - 0.5, box[1] - 0.5)  # the box's top-left pixel corner
    texture = Texture(
        pattern,
        origin,
        cell=(box[2] / cycles, box[3] / cycles),
        angle=0.0,
        phase=tuple(rng.uniform(0, 1, 2)),
        jitter=_jitter(rng) if spacing == "uneven" else None,
    )
    _fill(canvas, grid, window, mask, np.asarray(PALETTE[colour], np.float32), texture)
    segmentation = np.zeros((size, size), np.uint8)
    segmentation[window] = np.rint(mask * 255).astype(np.uint8)  # the body is painted last: all of it shows
    return SyntheticSample(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), box, segmentation)


@dataclass(frozen=True)
class Texture:
    """A fine half-covering pattern on a lattice of ``cell`` = (width, height) pixels, rotated by ``angle``.

    ``kind`` is ``"stripes"`` (across the first axis), ``"checks"`` or ``"dots"``. Lattice coordinates
    (u, v), in periods, start at ``origin`` and are offset by ``phase``. An uneven pattern shifts each
    lattice cell's mark by ``jitter[:, i mod n, j mod n]`` periods (along u, along v) for cell (i, j):
    stripes move by column, checks by column and row, dots one by one.
    """

    kind: str
    origin: tuple[float, float]
    cell: tuple[float, float]
    angle: float
    phase: tuple[float, float]
    jitter: np.ndarray | None = None  # (2, n, n) offsets in periods, |offset| < 0.25

    def coverage(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Where the pattern colour goes (float32 in [0, 1], anti-aliased to about a pixel)."""
        theta = np.deg2rad(self.angle)
        dx, dy = x - self.origin[0], y - self.origin[1]
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / self.cell[0] + self.phase[0]
        v = (dy * np.cos(theta) - dx * np.sin(theta)) / self.cell[1] + self.phase[1]
        if self.jitter is not None:
            n = self.jitter.shape[1]
            i, j = np.floor(u).astype(int) % n, np.floor(v).astype(int) % n
            if self.kind == "dots":
                u, v = u + self.jitter[0, i, j], v + self.jitter[1, i, j]
            else:
                u, v = u + self.jitter[0, i, 0], v + self.jitter[1, 0, j]
        if self.kind == "dots":  # radius 0.4 period: pi * 0.16 = half covered
            radius = np.hypot(np.mod(u, 1) - 0.5, np.mod(v, 1) - 0.5)
            return np.clip((0.4 - radius) * np.sqrt(self.cell[0] * self.cell[1]) + 0.5, 0, 1)
        across_u = _band(u, self.cell[0])
        if self.kind == "stripes":
            return across_u
        across_v = _band(v, self.cell[1])
        return across_u + across_v - 2 * across_u * across_v  # exclusive or: a checkerboard


def _jitter(rng: np.random.Generator, n: int = 32) -> np.ndarray:
    """Random offsets for an uneven pattern's cells, ``(2, n, n)`` periods (see :class:`Texture`)."""
    return np.clip(rng.normal(0, JITTER, (2, n, n)), -2 * JITTER, 2 * JITTER).astype(np.float32)


def _band(t: np.ndarray, period: float) -> np.ndarray:
    """Coverage of bands half a period wide at lattice coordinate ``t`` (periods of ``period`` pixels)."""
    inside = 0.25 - np.abs(np.mod(t, 1) - 0.5)  # > 0 in the band, in periods
    return np.clip(inside * period + 0.5, 0, 1).astype(np.float32)


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
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    jitter = _jitter(rng) if rng.random() < 0.5 else None
    return Texture(kind, (0.0, 0.0), (period, period), rng.uniform(0, 180), tuple(rng.uniform(0, 1, 2)), jitter)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.7:
        return np.asarray(list(PALETTE.values())[int(rng.integers(len(PALETTE)))], np.float32)
    return rng.uniform(40, 220, 3).astype(np.float32)


def _paint(
    canvas: np.ndarray, grid: np.ndarray, points: np.ndarray, colour: np.ndarray, texture: Texture | None
) -> None:
    """Paint a polygon in ``colour``, with ``texture`` on it."""
    window, mask = _rasterise(points, canvas.shape[0])
    _fill(canvas, grid, window, mask, colour, texture)


def _paint_distractor(canvas: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> None:
    """A random polygon piece in a palette (or random) colour, often with one of the patterns."""
    size = canvas.shape[0]
    radius = size * rng.uniform(0.05, 0.16)
    corners = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radii = radius * rng.uniform(0.6, 1.3, corners)
    points = rng.uniform(0, size, 2) + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    _paint(canvas, grid, points, _random_colour(rng), _random_texture(rng, size * rng.uniform(0.03, 0.06)))


def _paint_decoy(canvas: np.ndarray, grid: np.ndarray, length: float, rng: np.random.Generator) -> None:
    """Part of another body (cut by a straight line), about the object's size: a look-alike in the clutter."""
    size = canvas.shape[0]
    decoy_length = length * rng.uniform(0.6, 1.0)
    decoy_height = decoy_length * rng.uniform(0.62, 0.8)
    points = _body_outline(decoy_length, decoy_height, 1 if rng.random() < 0.5 else -1)
    keep = points[:, 0] <= decoy_length * rng.uniform(0.35, 0.6)  # the head end only
    if rng.random() < 0.5:
        keep = ~keep
    points = points[keep] + rng.uniform(-0.3 * decoy_length, size - 0.4 * decoy_length, 2)
    _paint(canvas, grid, points, _random_colour(rng), _random_texture(rng, decoy_length / CYCLES))


def _body_outline(length: float, height: float, facing: int) -> np.ndarray:
    """The body polygon in pixels, relative to its top-left corner: a pointed head and a blunt tail.

    The long edges bow outwards by :data:`BEND` times the height.
    """
    t = np.linspace(0, 1, 24)
    bow = BEND * height * np.sin(np.pi * t)
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


def _rasterise(points: np.ndarray, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """A polygon's anti-aliased coverage (float32 in [0, 1]) within its bounding window, and the window."""
    import cv2

    x0, y0 = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, size - 1)
    x1, y1 = np.clip(np.ceil(points.max(0)).astype(int) + 2, 1, size)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4
    corners = np.rint((points - (x0, y0)) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [corners], 255, cv2.LINE_AA, shift)
    return (slice(y0, y1), slice(x0, x1)), mask.astype(np.float32) / 255.0


def _fill(
    canvas: np.ndarray,
    grid: np.ndarray,
    window: tuple[slice, slice],
    coverage: np.ndarray,
    colour: np.ndarray,
    texture: Texture | None,
) -> None:
    """Blend ``colour`` (with :data:`PATTERN_COLOUR` where ``texture`` covers it) into ``canvas`` by ``coverage``."""
    fill = np.broadcast_to(colour, (*coverage.shape, 3))
    if texture is not None:
        pattern = texture.coverage(grid[0][window], grid[1][window])
        fill = fill + pattern[:, :, None] * (np.asarray(PATTERN_COLOUR, np.float32) - fill)
    region = canvas[window]
    region += coverage[:, :, None] * (fill - region)


def _write_lines(path: Path, lines) -> None:  # noqa: ANN001 (any iterable of str)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
