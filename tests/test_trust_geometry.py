"""Issue #25: boxes at the image's edges, two annotations for one image, EXIF orientation, and paths that
are not regular files.

Rules under test (docs/datasets.md):

* a box must keep some of the image: one that starts at or past the right or bottom edge, has no positive
  size, or is not finite is a per-sample problem (a ``DataError`` naming the file, the line and the box, or
  left out and listed with ``skip_bad``), never an ``AssertionError``;
* a second line (or ``.mat`` annotation) for the same image is a bad line naming both, even when it repeats
  the first exactly; the image is left out with ``skip_bad``;
* an image is what a viewer shows: the EXIF orientation is applied when it is decoded, sizes are displayed
  sizes, and boxes are in the displayed image's pixels;
* a named pipe, socket, device or folder given where a file is read is refused at once.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cqdkit.cli import cli
from cqdkit.data import ImageCache, PairedDataset, load_dataset, read_cars, read_cub, read_folder
from cqdkit.data.cache import ArrayStore, digest, prepare_source
from cqdkit.data.records import Record
from cqdkit.data.unlabeled import read_unlabeled
from cqdkit.errors import DataError
from cqdkit.images import box_outside, box_pixels, clip_box, crop, decode_image, fit_box, image_size, load_image
from tests.data_fixtures import (
    ResizeMaker,
    cars_rows,
    struct_array,
    write_cars_combined,
    write_cars_devkit,
    write_cub,
    write_folder,
    write_image,
)

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text + "\n")


def _one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# -- 1. geometry at the edges -------------------------------------------------------------------


@pytest.mark.parametrize("box", ["40 3 5 15", "2 30 20 5", "40.5 3 1 1", "39 30 1 0.5"])
def test_cub_box_starting_on_the_right_or_bottom_edge_is_a_problem_not_an_assert(tmp_path, box):
    folder = write_cub(tmp_path)  # 40x30 images
    _replace_line(folder / "bounding_boxes.txt", 1, f"1 {box}")
    dataset = read_cub(folder)  # the image size is needed to see it: found when the image is read
    record = next(r for r in dataset.train if r.id == "1")
    for pairs in (PairedDataset([record], ResizeMaker(), cache=None), PairedDataset([record], ResizeMaker())):
        with pytest.raises(DataError) as error:
            pairs[0]
        _one_line(error, "img_0.png", "bounding_boxes.txt line 1", "box (x=", "40x30 image")
    with pytest.raises(DataError) as error:
        load_dataset("cub", folder, deep=True)
    _one_line(error, "img_0.png", "bounding_boxes.txt line 1", "40x30 image")
    skipped = load_dataset("cub", folder, skip_bad=True)
    assert "1" not in [r.id for r in skipped.train + skipped.test]
    assert len(skipped.problems) == 1 and "bounding_boxes.txt line 1" in skipped.problems[0]


def test_folder_box_starting_on_the_bottom_edge_is_listed_with_skip_bad(tmp_path):
    root = write_folder(tmp_path)  # 40x30 images
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/cat/0.jpg,2,30,10,1\ntrain/cat/1.png,2,3,10,10\n")
    dataset = read_folder(root)
    record = next(r for r in dataset.train if r.id == "train/cat/0.jpg")
    with pytest.raises(DataError) as error:
        PairedDataset([record], ResizeMaker(), cache=None)[0]
    _one_line(error, "0.jpg", "bboxes.csv line 2", "(x=2, y=30, width=10, height=1)")
    skipped = load_dataset("folder", root, skip_bad=True)
    assert "train/cat/0.jpg" not in [r.id for r in skipped.train] and "train/cat/1.png" in [r.id for r in skipped.train]
    assert len(skipped.problems) == 1 and "bboxes.csv line 2" in skipped.problems[0]


def test_a_box_on_the_edge_is_one_error_line_in_the_cli(tmp_path):
    folder = write_cub(tmp_path)
    _replace_line(folder / "bounding_boxes.txt", 1, "1 40 3 5 15")
    result = CliRunner().invoke(cli, ["inspect", "--dataset", "cub", "--root", str(folder), "--deep"])
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bounding_boxes.txt line 1" in errors[0] and "x=40" in errors[0]


@pytest.mark.parametrize(
    "box, fragment",
    [
        ("2 3 0 15", "zero size"),
        ("2 3 20 -4", "zero size"),
        ("nan 3 20 15", "non-finite"),
        ("2 3 inf 15", "non-finite"),
        ("2 3 1e400 15", "non-finite"),
        ("-3 3 20 15", "outside the image"),
    ],
)
def test_cub_and_folder_boxes_that_hold_no_pixel_are_found_on_reading(tmp_path, box, fragment):
    folder = write_cub(tmp_path / "cub")
    _replace_line(folder / "bounding_boxes.txt", 2, f"2 {box}")
    with pytest.raises(DataError) as error:
        read_cub(folder)
    _one_line(error, "bounding_boxes.txt line 2", fragment)
    assert len(read_cub(folder, skip_bad=True).problems) == 1
    root = write_folder(tmp_path / "folder")
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/cat/0.jpg," + box.replace(" ", ",") + "\n")
    with pytest.raises(DataError) as error:
        read_folder(root)
    _one_line(error, "bboxes.csv line 2", fragment)


@pytest.mark.parametrize(
    "corners, fragment",
    [((10, 4, 5, 18), "x1 <= x2"), ((3, 18, 22, 4), "y1 <= y2"), ((0, 4, 22, 18), "x1 >= 1"), ((3, 0, 22, 18), "y1 >= 1")],
)
def test_cars_boxes_inverted_or_before_the_first_pixel_are_found_on_reading(tmp_path, corners, fragment):
    root = write_cars_devkit(tmp_path)
    rows = cars_rows("cars_train", 4)
    for name, value in zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), corners):
        rows[2][name] = np.uint8(value)
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(rows)})
    with pytest.raises(DataError) as error:
        read_cars(root)
    _one_line(error, "cars_train_annos.mat annotation 3", fragment, "x1=")
    dataset = read_cars(root, skip_bad=True)
    assert "cars_train/cars_train_00002.jpg" not in [r.id for r in dataset.train] and len(dataset.train) == 3


def test_a_cars_box_of_one_pixel_is_kept(tmp_path):
    root = write_cars_devkit(tmp_path)
    rows = cars_rows("cars_train", 4)
    rows[0]["bbox_x2"], rows[0]["bbox_y2"] = np.uint16(3), np.uint16(4)  # x1 = x2, y1 = y2: one pixel
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(rows)})
    assert read_cars(root).train[0].bbox == (2.0, 3.0, 1.0, 1.0)


_COORD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-60, 60), st.integers(-60, 60))


@settings(max_examples=300, deadline=None)
@given(box=st.tuples(_COORD, _COORD, _COORD, _COORD), width=st.integers(1, 50), height=st.integers(1, 50))
def test_any_box_that_is_accepted_leaves_a_non_empty_crop_inside_the_image(box, width, height):
    image = np.zeros((height, width, 3), np.uint8)
    box = tuple(float(v) for v in box)
    try:
        fitted = fit_box(box, image.shape)
    except DataError:
        fitted = None
    if fitted is not None:
        x0, y0, x1, y1 = box_pixels(fitted, image.shape)
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert crop(image, fitted).size > 0 and fitted[2] > 0 and fitted[3] > 0
    if box_outside(box, width, height) is None:
        clipped = clip_box(box, width, height)
        assert clipped is not None and crop(image, clipped).size > 0
        assert fitted is not None  # what the dataset check lets through, the degradations accept


@pytest.fixture(scope="module")
def small_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("geometry") / "small.jpg"
    write_image(path, 20, 12)
    return path


@settings(max_examples=150, deadline=None)
@given(box=st.tuples(*[st.floats(-30, 30) | st.sampled_from([0.0, 12.0, 20.0, 21.0])] * 4), size=st.integers(2, 16))
def test_making_a_working_image_never_asserts(small_jpeg, box, size):
    record = Record("1", small_jpeg, 0, box, "bounding_boxes.txt line 1")
    try:
        image, fitted = prepare_source(record, size, use_box=True)
    except DataError as error:
        assert "bounding_boxes.txt line 1" in str(error) and "box" in str(error)
        return
    assert fitted is not None and crop(image, fitted).size > 0


# -- 2. two annotations for one image -----------------------------------------------------------


@pytest.mark.parametrize(
    "file_name, extra, first",
    [
        ("bounding_boxes.txt", "1 0 0 10 10", 1),  # a different box
        ("bounding_boxes.txt", "1 2.0 3.0 20.0 15.0", 1),  # the same box again: refused too (one rule)
        ("image_class_labels.txt", "4 1", 4),  # image 4 is of class 2: which is it?
        ("train_test_split.txt", "2 0", 2),
        ("images.txt", "3 001.Class_1/img_0.png", 3),
    ],
)
def test_cub_second_line_for_an_image_names_both_lines(tmp_path, file_name, extra, first):
    folder = write_cub(tmp_path)  # 9 images, one line each
    _append(folder / file_name, extra)
    image_id = extra.split()[0]
    with pytest.raises(DataError) as error:
        read_cub(folder)
    _one_line(error, f"{file_name} line 10", f"image id {image_id} appears twice", f"first on line {first}")
    dataset = read_cub(folder, skip_bad=True)
    assert image_id not in [r.id for r in dataset.train + dataset.test]
    assert len(dataset.train + dataset.test) == 8 and len(dataset.problems) == 1


def test_cub_two_image_ids_for_one_file_are_a_problem(tmp_path):
    folder = write_cub(tmp_path)
    _replace_line(folder / "images.txt", 5, "5 001.Class_1//img_0.png")  # image 1's file, spelled differently
    with pytest.raises(DataError) as error:
        read_cub(folder)
    _one_line(error, "images.txt line 5", "image id 5", "image id 1 (line 1)")
    dataset = read_cub(folder, skip_bad=True)
    assert not {"1", "5"} & {r.id for r in dataset.train + dataset.test} and len(dataset.problems) == 1


@pytest.mark.parametrize("second", ["train/cat/0.jpg,0,0,10,10", "train/cat/0.jpg,2,3,20,15", "./train/cat/0.jpg,2,3,20,15"])
def test_folder_second_box_line_for_an_image_names_both_lines(tmp_path, second):
    root = write_folder(tmp_path)
    (root / "bboxes.csv").write_text(
        f"path,x,y,width,height\ntrain/cat/0.jpg,2,3,20,15\ntrain/cat/1.png,2,3,20,15\n{second}\n"
    )
    with pytest.raises(DataError) as error:
        read_folder(root)
    _one_line(error, "bboxes.csv line 4", "'train/cat/0.jpg'", "the first is line 2")
    dataset = read_folder(root, skip_bad=True)
    ids = [r.id for r in dataset.train]
    assert "train/cat/0.jpg" not in ids and "train/cat/1.png" in ids and len(dataset.problems) == 1


def test_cars_image_listed_twice_is_a_problem_in_both_layouts(tmp_path):
    root = write_cars_devkit(tmp_path / "devkit-form")
    rows = cars_rows("cars_train", 4)
    rows[3]["fname"] = rows[1]["fname"]
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(rows)})
    with pytest.raises(DataError) as error:
        read_cars(root)
    _one_line(error, "cars_train_annos.mat annotation 4", "cars_train/cars_train_00001.jpg", "first as annotation 2")
    dataset = read_cars(root, skip_bad=True)
    assert [r.id for r in dataset.train] == ["cars_train/cars_train_00000.jpg", "cars_train/cars_train_00002.jpg"]
    assert len(dataset.problems) == 1

    root = write_cars_combined(tmp_path / "combined-form")
    content = scipy.io.loadmat(root / "cars_annos.mat", squeeze_me=True, struct_as_record=True)
    rows = [{name: row[name] for name in row.dtype.names} for row in content["annotations"]]
    rows.append(dict(rows[1]))  # exactly the same annotation again
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(rows), "class_names": content["class_names"]})
    with pytest.raises(DataError) as error:
        read_cars(root)
    _one_line(error, "cars_annos.mat annotation 7", "car_ims/000002.jpg", "first as annotation 2")
    dataset = read_cars(root, skip_bad=True)
    assert "car_ims/000002.jpg" not in [r.id for r in dataset.train + dataset.test]
    assert len(dataset.train + dataset.test) == 5


# -- 3. EXIF orientation --------------------------------------------------------------------------

#: What a viewer shows for each EXIF orientation, from the stored pixels (the EXIF specification).
SHOWN = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.rot90(np.fliplr(a), 1),  # mirrored, then a quarter turn counter-clockwise: the transpose
    6: lambda a: np.rot90(a, -1),  # a quarter turn clockwise
    7: lambda a: np.rot90(np.fliplr(a), -1),
    8: lambda a: np.rot90(a, 1),
}


def _write_oriented(path: Path, orientation: int, width: int = 40, height: int = 24, seed: int = 0) -> np.ndarray:
    """A JPEG (or PNG, WebP by suffix) whose pixels are stored ``width x height`` with an EXIF Orientation tag;
    returns the stored pixels as Pillow decodes them, ignoring the tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels = np.kron(pixels[::4, ::4], np.ones((4, 4, 1), np.uint8))[:height, :width]  # 4x4 blocks: JPEG keeps them
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_decoded_as_a_viewer_shows_them(tmp_path, orientation):
    stored = _write_oriented(tmp_path / "x.jpg", orientation)
    shown = SHOWN[orientation](stored)
    displayed = (shown.shape[1], shown.shape[0])
    image, size = decode_image(tmp_path / "x.jpg")
    assert np.array_equal(image, shown) and size == displayed
    assert np.array_equal(load_image(tmp_path / "x.jpg"), shown)
    assert image_size(tmp_path / "x.jpg") == displayed
    small, size = decode_image(tmp_path / "x.jpg", draft=lambda wh: (wh[0] // 8, wh[1] // 8))  # 1/8 scale
    assert size == displayed and (small.shape[1], small.shape[0]) == (displayed[0] // 8, displayed[1] // 8)
    small_stored = np.asarray(Image.open(tmp_path / "x.jpg").reduce(8).convert("RGB")).astype(int)
    assert np.abs(small.astype(int) - SHOWN[orientation](small_stored)).mean() < 12  # turned the same way


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_other_formats_with_an_orientation_tag_are_turned_too(tmp_path, suffix):
    stored = _write_oriented(tmp_path / f"x{suffix}", 6)
    image, size = decode_image(tmp_path / f"x{suffix}")
    assert size == image_size(tmp_path / f"x{suffix}") == (24, 40) and image.shape == (40, 24, 3)
    if suffix == ".png":  # lossless
        assert np.array_equal(image, SHOWN[6](stored))


def test_a_png_orientation_after_the_pixels_is_ignored_by_size_and_decoding_alike(tmp_path):
    """Only what the header says counts: image_size need not decode a PNG to find an eXIf chunk at its end."""
    import struct

    stored = _write_oriented(tmp_path / "x.png", 6)
    data = (tmp_path / "x.png").read_bytes()
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        chunks.append(data[position:position + 12 + length])
        position += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1 and rest[-1][4:8] == b"IEND"
    (tmp_path / "late.png").write_bytes(data[:8] + b"".join(rest[:-1] + exif + rest[-1:]))
    image, size = decode_image(tmp_path / "late.png")
    assert size == image_size(tmp_path / "late.png") == (40, 24) and np.array_equal(image, stored)


def test_boxes_are_in_the_displayed_image_and_checked_against_its_size(tmp_path):
    root = write_folder(tmp_path)
    stored = _write_oriented(root / "train" / "cat" / "0.jpg", 6, width=40, height=24)  # shown 24 wide, 40 high
    shown = SHOWN[6](stored)
    (root / "bboxes.csv").write_text(
        "path,x,y,width,height\n"
        "train/cat/0.jpg,4,20,16,16\n"  # inside the shown 24x40 image, not inside the stored 40x24 one
        "train/cat/1.png,2,3,20,15\n"
    )
    dataset = load_dataset("folder", root, deep=True)  # the deep check uses the displayed size
    record = next(r for r in dataset.train if r.id == "train/cat/0.jpg")
    x, z, *_ = PairedDataset([record], ResizeMaker(size=16), cache=None)[0]
    assert np.array_equal(x.permute(1, 2, 0).numpy(), shown[20:36, 4:20])
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/cat/0.jpg,20,4,16,16\n")  # stored frame only
    skipped = load_dataset("folder", root, skip_bad=True)
    assert "train/cat/0.jpg" not in [r.id for r in skipped.train]
    assert len(skipped.problems) == 1 and "outside the 24x40 image" in skipped.problems[0]


def test_a_working_image_cached_before_orientation_counted_is_not_reused(tmp_path):
    _write_oriented(tmp_path / "x.jpg", 8)
    record = Record("1", tmp_path / "x.jpg", 0, None)
    stale = np.zeros((24, 40, 3), np.uint8)  # what an older cqdkit kept: the stored, unturned image
    stat = record.path.stat()
    old_key = digest(str(record.path), stat.st_mtime_ns, stat.st_size, record.bbox, 16, False)
    ArrayStore(tmp_path / "cache").put(old_key, {"image": stale, "box": np.full(4, np.nan)})
    image, _ = ImageCache(tmp_path / "cache").get(record, 16, use_box=False)
    assert image.shape[0] > image.shape[1] and np.array_equal(image, prepare_source(record, 16, use_box=False)[0])


def test_a_mask_is_turned_like_its_image(tmp_path):
    from cqdkit.data.paired import load_annotation

    _write_oriented(tmp_path / "x.jpg", 6)
    mask = np.zeros((24, 40), np.uint8)
    mask[:, :10] = 255  # the left of the stored image: the top once turned clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(mask).save(tmp_path / "mask.png", exif=exif)
    record = Record("1", tmp_path / "x.jpg", 0, None, annotations={"mask": tmp_path / "mask.png"})
    turned = load_annotation(record, "mask", (40, 24))
    assert turned[:10].min() == 255 and turned[10:].max() == 0


# -- 4. reading what is not a regular file ---------------------------------------------------------


def _refused_at_once(call, *fifos: Path, seconds: float = 10.0) -> DataError:
    """``call()``'s DataError; fails (instead of hanging the tests) when ``call`` is still waiting after ``seconds``."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 -- handed to the test
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:  # let the reader go: a writer that opens and closes at once
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(seconds)
        pytest.fail(f"still reading after {seconds} s: it waited on a file that is not a regular one")
    assert outcome and isinstance(outcome[0], DataError), outcome
    return outcome[0]


@needs_fifo
@pytest.mark.parametrize("reader", [decode_image, image_size, load_image])
def test_a_named_pipe_as_an_image_is_refused_at_once(tmp_path, reader):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    error = _refused_at_once(lambda: reader(fifo), fifo)
    assert str(error) == f"{fifo}: not a regular file: expected an image file, found a named pipe (FIFO)"


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "folder", "socket"])
def test_devices_folders_and_sockets_as_an_image_are_refused_at_once(tmp_path, special):
    if special.startswith("/dev/"):
        path = Path(special)
        if not path.exists():
            pytest.skip(f"no {special} here")
    elif special == "folder":
        path = tmp_path / "x.jpg"
        path.mkdir()
    else:
        if not hasattr(socket, "AF_UNIX"):
            pytest.skip("no Unix sockets")
        path = tmp_path / "s.jpg"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    for reader in (decode_image, image_size):
        error = _refused_at_once(lambda: reader(path))
        kind = {"folder": "a folder", "socket": "a socket"}.get(special, "a character device")
        assert str(error) == f"{path}: not a regular file: expected an image file, found {kind}"


@needs_fifo
def test_cub_annotation_files_and_images_that_are_named_pipes_are_refused(tmp_path):
    for name in ("images.txt", "bounding_boxes.txt", "train_test_split.txt"):
        folder = write_cub(tmp_path / name)
        (folder / name).unlink()
        os.mkfifo(folder / name)
        error = _refused_at_once(lambda: read_cub(folder), folder / name)  # noqa: B023 -- called at once
        assert str(error) == f"{folder / name}: not a regular file: expected a text file of annotations, " \
                             "found a named pipe (FIFO)"
    folder = write_cub(tmp_path / "image")
    image = folder / "images" / "002.Class_2" / "img_1.png"
    image.unlink()
    os.mkfifo(image)
    error = _refused_at_once(lambda: read_cub(folder), image)
    assert "images.txt line 5" in str(error) and f"{image}: not a regular file" in str(error)
    dataset = _refused_at_once_or_value(lambda: load_dataset("cub", folder, skip_bad=True), image)
    assert "5" not in [r.id for r in dataset.train + dataset.test] and len(dataset.problems) == 1


def _refused_at_once_or_value(call, *fifos: Path, seconds: float = 10.0):
    """``call()``'s value, failing when it is still waiting after ``seconds``."""
    value: list[object] = []

    def wrapped() -> None:
        value.append(call())
        raise DataError("done")

    _refused_at_once(wrapped, *fifos, seconds=seconds)
    return value[0]


@needs_fifo
def test_folder_with_a_named_pipe_image_or_boxes_file_is_refused(tmp_path):
    root = write_folder(tmp_path / "image")
    fifo = root / "train" / "dog" / "x.jpg"
    os.mkfifo(fifo)
    error = _refused_at_once(lambda: read_folder(root), fifo)
    assert str(error) == f"{fifo}: not a regular file: expected an image file, found a named pipe (FIFO)"
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/dog/x.jpg,1,1,5,5\n")
    dataset = _refused_at_once_or_value(lambda: load_dataset("folder", root, skip_bad=True), fifo)
    assert "train/dog/x.jpg" not in [r.id for r in dataset.train] and len(dataset.train) == 6
    assert dataset.problems == [str(error)]

    root = write_folder(tmp_path / "boxes")
    os.mkfifo(root / "bboxes.csv")
    error = _refused_at_once(lambda: read_folder(root), root / "bboxes.csv")
    assert str(error) == f"{root / 'bboxes.csv'}: not a regular file: expected a CSV file of boxes, " \
                         "found a named pipe (FIFO)"


@needs_fifo
def test_cars_mat_files_and_images_that_are_named_pipes_are_refused(tmp_path):
    root = write_cars_combined(tmp_path / "combined")
    (root / "cars_annos.mat").unlink()
    os.mkfifo(root / "cars_annos.mat")
    error = _refused_at_once(lambda: read_cars(root), root / "cars_annos.mat")
    assert str(error).startswith(f"{root / 'cars_annos.mat'}: not a regular file")
    root = write_cars_devkit(tmp_path / "devkit")
    (root / "devkit" / "cars_train_annos.mat").unlink()
    os.mkfifo(root / "devkit" / "cars_train_annos.mat")
    error = _refused_at_once(lambda: read_cars(root), root / "devkit" / "cars_train_annos.mat")
    assert "cars_train_annos.mat: not a regular file" in str(error)
    root = write_cars_devkit(tmp_path / "image")
    image = root / "cars_test" / "cars_test_00001.jpg"
    image.unlink()
    os.mkfifo(image)
    error = _refused_at_once(lambda: read_cars(root), image)
    assert "annotation 2" in str(error) and f"{image}: not a regular file" in str(error)


@needs_fifo
def test_unlabeled_folder_with_a_named_pipe_is_refused(tmp_path):
    write_image(tmp_path / "u" / "a.png")
    os.mkfifo(tmp_path / "u" / "b.jpg")
    error = _refused_at_once(lambda: read_unlabeled(tmp_path / "u"), tmp_path / "u" / "b.jpg")
    assert "b.jpg: not a regular file" in str(error) and "--skip-bad" in str(error)
    records, problems = _refused_at_once_or_value(lambda: read_unlabeled(tmp_path / "u", skip_bad=True))
    assert [r.path.name for r in records] == ["a.png"] and len(problems) == 1


@needs_fifo
def test_a_named_pipe_image_is_one_error_line_in_the_cli(tmp_path):
    root = write_folder(tmp_path)
    fifo = root / "test" / "cat" / "z.png"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["inspect", "--dataset", "folder", "--root", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{fifo}: not a regular file" in errors[0]


def test_the_predictor_turns_a_pil_image_upright_like_a_file(tmp_path):
    from cqdkit.predictor import _as_array

    stored = _write_oriented(tmp_path / "x.jpg", 6)
    with Image.open(tmp_path / "x.jpg") as image:
        assert np.array_equal(_as_array(image), SHOWN[6](stored))
    assert np.array_equal(_as_array(tmp_path / "x.jpg"), SHOWN[6](stored))
