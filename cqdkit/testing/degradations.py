"""Conformance check for degradation plugins: call it from your own tests.

Example::

    from cqdkit.plugin import PluginManager
    from cqdkit.testing import check_degradation

    def test_sepia():
        manager = PluginManager(autoload=False)
        manager.register(my_plugin_module)
        check_degradation("sepia", manager=manager)

It compiles the spec with :class:`cqdkit.degradations.PairMaker` and checks, on hypothesis-generated
samples (tiny, non-square, gray, RGBA and 16-bit images; boxes touching the border; several output sizes;
with and without ``crop`` and ``augment``):

- z is ``size x size x 3`` ``uint8``, and so is x -- or ``size x size x (3 + k)`` when the ops declare
  ``k`` privileged channels in ``x_channels``; the input image is not modified;
- the same seed gives the same pair, also after pickling the PairMaker (DataLoader workers);
- x (its RGB channels) is the plain stretched source or box crop, untouched by the op (unless the op
  declares ``sets_x``);
- and, on one textured image: different seeds give different z when the entry says ``random=True``,
  and the same z when it does not; ``describe()`` is JSON-able; an op that ``needs_box`` refuses a
  sample without one, and one that ``needs_annotations`` a sample without them.

Ops that declare ``needs_annotations`` get random annotation images of each sample's size (and a disc
mask on the textured image).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..images import Box
from ..errors import DataError
from ..plugin import PluginManager

Sample = tuple[np.ndarray, Box | None, int]  # image, box, seed
Annotations = dict[str, np.ndarray]


def check_degradation(
    spec_or_name: str,
    *,
    manager: PluginManager | None = None,
    max_examples: int = 20,
    sizes: Sequence[int] = (8, 17, 32),
) -> None:
    """Check that a degradation (a name or a whole spec) keeps cqdkit's contract; raises AssertionError."""
    from ..degradations import PairMaker

    makers: dict[tuple[int, bool, bool], Any] = {}

    def maker_for(size: int, crop: bool, augment: bool) -> Any:
        key = (size, crop, augment)
        if key not in makers:
            makers[key] = PairMaker(spec_or_name, size=size, crop=crop, augment=augment, manager=manager)
        return makers[key]

    reference = maker_for(sizes[-1], False, False)
    _check_seed_behaviour(reference, spec_or_name)

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(sample=_samples(), size=st.sampled_from(list(sizes)), augment=st.booleans(), data=st.data())
    def check_sample(sample: Sample, size: int, augment: bool, data: Any) -> None:
        image, bbox, seed = sample
        crop = bbox is not None and data.draw(st.booleans(), label="crop")
        maker = maker_for(size, crop, augment)
        if maker.needs_box and bbox is None:
            return
        annotations = {name: _annotation(data, image.shape[:2], name) for name in maker.needs_annotations}
        _check_pair(maker, image, bbox, seed, spec_or_name, annotations)

    check_sample()


def textured_image(height: int = 48, width: int = 64) -> np.ndarray:
    """A deterministic colourful image with edges and texture at every scale (for seed checks)."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx * yy) % 256], -1)
    image[(yy - height // 2) ** 2 + (xx - width // 3) ** 2 < (height // 4) ** 2] = (250, 30, 30)
    return np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)


def sample_bird(height: int = 300, width: int = 400, seed: int = 0) -> tuple[np.ndarray, Box]:
    """A procedural CUB-like photo: a bird on a branch in leafy clutter, and the bird's box (x, y, w, h).

    For examples, figures and tests; nothing is downloaded.
    """
    import cv2

    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height)[:, None, None]
    image = ((1 - yy) * np.array([150, 190, 230]) + yy * np.array([90, 140, 90])) * np.ones((1, width, 1))
    image = image.astype(np.uint8)
    for _ in range(60):  # leaves and twigs
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(6, 30)), int(rng.integers(3, 12)))
        colour = tuple(int(c) for c in rng.integers(20, 140, 3) * np.array([0.6, 1.0, 0.5]))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    for _ in range(8):
        start = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, start, end, (90, 60, 40), int(rng.integers(2, 6)), cv2.LINE_AA)
    s = min(height, width) / 300
    cx, cy = width * 0.5, height * 0.5

    def p(dx: float, dy: float) -> tuple[int, int]:
        return int(cx + dx * s), int(cy + dy * s)

    cv2.line(image, p(-190, 95), p(190, 70), (70, 45, 30), max(2, int(12 * s)), cv2.LINE_AA)  # the branch
    tail = np.array([p(-55, 15), p(-130, 60), p(-120, 75), p(-45, 35)], np.int32)
    cv2.fillPoly(image, [tail], (60, 50, 45), cv2.LINE_AA)
    cv2.ellipse(image, p(0, 10), (int(70 * s), int(45 * s)), -15, 0, 360, (200, 120, 40), -1, cv2.LINE_AA)
    cv2.ellipse(image, p(10, 30), (int(45 * s), int(22 * s)), -10, 0, 360, (240, 220, 170), -1, cv2.LINE_AA)
    cv2.ellipse(image, p(-15, 0), (int(50 * s), int(25 * s)), -25, 0, 360, (110, 70, 35), -1, cv2.LINE_AA)
    cv2.circle(image, p(60, -35), int(32 * s), (200, 120, 40), -1, cv2.LINE_AA)
    cv2.circle(image, p(70, -42), int(7 * s), (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(image, p(72, -42), int(4 * s), (0, 0, 0), -1, cv2.LINE_AA)
    beak = np.array([p(88, -40), p(125, -28), p(88, -22)], np.int32)
    cv2.fillPoly(image, [beak], (240, 180, 30), cv2.LINE_AA)
    for leg in (-10, 15):
        cv2.line(image, p(leg, 50), p(leg + 5, 82), (60, 40, 30), max(1, int(4 * s)), cv2.LINE_AA)
    box = (cx - 135 * s, cy - 70 * s, 265 * s, 160 * s)
    return image, box


def disc_mask(height: int = 48, width: int = 64) -> np.ndarray:
    """A soft-edged disc, ``height x width`` uint8 (an annotation image for :func:`textured_image`)."""
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(yy - height / 2, xx - width / 3) - height / 4
    return np.clip(127.5 - 64 * distance, 0, 255).astype(np.uint8)


def _check_seed_behaviour(maker: Any, spec: str) -> None:
    image = textured_image()
    box = (5.0, 4.0, 40.0, 30.0)
    json.dumps(maker.describe())
    annotations = {name: disc_mask() for name in maker.needs_annotations}
    kept = {name: array.copy() for name, array in annotations.items()}
    first = maker(image, bbox=box, seed=0, annotations=annotations)
    assert np.array_equal(image, textured_image()), f"{spec}: modified the input image"
    unchanged = all(np.array_equal(annotations[name], kept[name]) for name in kept)
    assert unchanged, f"{spec}: modified an annotation image"
    again = maker(image, bbox=box, seed=0, annotations=annotations)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), f"{spec}: same seed, different pair"
    zs = [maker(image, bbox=box, seed=seed, annotations=annotations)[1] for seed in range(4)]
    distinct = len({z.tobytes() for z in zs})
    if maker.random:
        assert distinct == len(zs), f"{spec}: declared random, but different seeds gave the same z"
    else:
        assert distinct == 1, f"{spec}: declared not random (random=False), but z changes with the seed"
    clone = pickle.loads(pickle.dumps(maker))
    for seed in (0, 3):
        x, z = maker(image, bbox=box, seed=seed, annotations=annotations)
        x2, z2 = clone(image, bbox=box, seed=seed, annotations=annotations)
        same = np.array_equal(x, x2) and np.array_equal(z, z2)
        assert same, f"{spec}: a pickled PairMaker gives another pair"
    if maker.needs_box:
        refused = f"{spec}: needs a box, but a sample without one"
        _assert_refuses(lambda: maker(image, seed=0, annotations=annotations), refused)
    for name in maker.needs_annotations:
        others = {other: array for other, array in annotations.items() if other != name}
        refused = f"{spec}: needs the {name!r} annotation, but a sample without it"
        _assert_refuses(lambda: maker(image, bbox=box, seed=0, annotations=others), refused)


def _assert_refuses(call: Any, what: str) -> None:
    try:
        call()
    except DataError:
        return
    raise AssertionError(f"{what} raised no DataError")


def _check_pair(
    maker: Any, image: np.ndarray, bbox: Box | None, seed: int, spec: str, annotations: Annotations
) -> None:
    from ..degradations import make_x

    before = image.copy()
    x, z = maker(image, bbox=bbox, seed=seed, annotations=annotations)
    options = f"size={maker.size}, crop={maker.crop}, augment={maker.augment}"
    what = f"{spec} ({options}, image {image.shape} {image.dtype})"
    assert np.array_equal(image, before), f"{what}: modified the input image"
    channels = len(maker.x_channels)
    assert channels >= 3 and tuple(maker.x_channels[:3]) == ("red", "green", "blue"), f"{what}: x_channels"
    for name, view, depth in (("x", x, channels), ("z", z, 3)):
        assert isinstance(view, np.ndarray), f"{what}: {name} is not a numpy array"
        assert view.shape == (maker.size, maker.size, depth), f"{what}: {name} has shape {view.shape}"
        assert view.dtype == np.uint8, f"{what}: {name} has dtype {view.dtype}"
    again_x, again_z = maker(image, bbox=bbox, seed=seed, annotations=annotations)
    assert np.array_equal(x, again_x) and np.array_equal(z, again_z), f"{what}: same seed, different pair"
    if not any(getattr(op, "sets_x", False) for op in maker.ops):
        expected = make_x(*maker.source(image, bbox, seed), maker.size, maker.crop)
        assert np.array_equal(x[:, :, :3], expected), f"{what}: x is not the plain stretched source/crop"


def _annotation(data: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A random annotation image of ``shape``: mostly 0 and 255 (like a mask), some values between."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label=f"annotation {name}"))
    return rng.choice(np.array([0, 255, 128], np.uint8), size=shape, p=[0.45, 0.45, 0.1])


@st.composite
def _samples(draw: st.DrawFn) -> Sample:
    """An image (1..40 px a side; gray, gray x1, RGB or RGBA; uint8 or uint16), maybe a box, and a seed."""
    height, width = draw(st.integers(1, 40), label="height"), draw(st.integers(1, 40), label="width")
    channels = draw(st.sampled_from([0, 1, 3, 4]), label="channels")
    dtype = draw(st.sampled_from([np.uint8, np.uint16]), label="dtype")
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="pixels"))
    shape = (height, width) if channels == 0 else (height, width, channels)
    image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    bbox = None
    if draw(st.booleans(), label="has box"):
        x, w = _interval(draw, width)
        y, h = _interval(draw, height)
        bbox = (x, y, w, h)
    return image, bbox, draw(st.integers(0, 2**31 - 1), label="seed")


def _interval(draw: st.DrawFn, length: int) -> tuple[float, float]:
    """A start and extent within ``0..length``, often touching one or both ends."""
    start = draw(st.one_of(st.just(0.0), st.floats(0.0, length - 0.5)), label="box start")
    end = draw(st.one_of(st.just(float(length)), st.floats(start + 0.5, float(length))), label="box end")
    return start, end - start
