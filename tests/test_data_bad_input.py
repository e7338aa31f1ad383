"""Reading images of every mode, and clear errors for corrupt, truncated and missing files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from cqdkit.data import load_dataset, load_image, read_cub
from cqdkit.errors import DataError
from tests.data_fixtures import write_cub, write_image


def test_rgb_png_round_trip(tmp_path):
    written = write_image(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (30, 40, 3)
    assert np.array_equal(loaded, written)


def test_grayscale(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    loaded = load_image(tmp_path / "g.png")
    assert loaded.shape == (12, 10, 3)
    assert all(np.array_equal(loaded[:, :, c], gray) for c in range(3))


def test_16_bit_gray_and_rgb(tmp_path):
    gray = np.full((8, 8), 65535, np.uint16)
    gray[0, 0] = 0
    gray[0, 1] = 257 * 100
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.shape == (8, 8, 3)
    assert loaded[0, 0, 0] == 0 and loaded[0, 1, 1] == 100 and loaded[5, 5, 2] == 255

    rgb = np.zeros((6, 6, 3), np.uint16)
    rgb[..., 0] = 257 * 200  # red, written by OpenCV in BGR order
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[:, :, ::-1])
    loaded = load_image(tmp_path / "c16.png")
    assert loaded.dtype == np.uint8 and tuple(loaded[2, 2]) == (200, 0, 0)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (10, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red
    loaded = load_image(tmp_path / "c.jpg")
    assert loaded.shape == (6, 10, 3)
    red, green, blue = loaded[3, 5].astype(int)
    assert red > 240 and green < 15 and blue < 15


def test_palette_png(tmp_path):
    image = Image.new("P", (5, 4))
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((2, 1), 1)
    image.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert tuple(loaded[1, 2]) == (10, 200, 30) and tuple(loaded[0, 0]) == (0, 0, 0)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red ...
    rgba[0, 0, 3] = 255  # opaque here, transparent elsewhere
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert tuple(loaded[0, 0]) == (200, 0, 0) and tuple(loaded[3, 3]) == (255, 255, 255)


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(DataError, match=r"absent.png: image file not found"):
        load_image(tmp_path / "absent.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(DataError, match=r"junk.jpg: cannot decode the image"):
        load_image(tmp_path / "junk.jpg")
    write_image(tmp_path / "whole.jpg", 64, 64)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.jpg: cannot decode the image"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"expected an image file, found a folder"):
        load_image(tmp_path)


def test_corrupt_image_in_a_dataset_is_found_lazily_or_by_the_deep_check(tmp_path):
    folder = write_cub(tmp_path)
    bad = folder / "images" / "001.Class_1" / "img_1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    dataset = read_cub(folder)  # loading checks annotations and existence only
    assert bad in [r.path for r in dataset.train]
    with pytest.raises(DataError, match=r"img_1.png: cannot decode the image"):
        load_dataset("cub", folder, deep=True)
    checked = load_dataset("cub", folder, deep=True, skip_bad=True)
    assert bad not in [r.path for r in checked.train + checked.test]
    assert len(checked.problems) == 1 and "img_1.png" in checked.problems[0]
