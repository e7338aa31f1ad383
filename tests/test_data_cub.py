"""The CUB-200-2011 reader, on tiny folders written in CUB's layout."""

from __future__ import annotations

import pytest
from tests.data_fixtures import write_cub

from cqdkit.data import load_dataset, read_cub
from cqdkit.errors import DataError


def test_reads_layout_from_parent_or_folder(tmp_path):
    folder = write_cub(tmp_path, classes=3, train=2, test=1)
    for root in (tmp_path, folder):
        dataset = read_cub(root)
        assert dataset.root == folder
        assert dataset.classes == ["001.Class_1", "002.Class_2", "003.Class_3"]
        assert len(dataset.train) == 6 and len(dataset.test) == 3
        assert dataset.has_boxes and dataset.problems == []
    first = dataset.train[0]
    assert first.id == "1" and first.label == 0 and first.path.is_file()
    assert first.bbox == (2.0, 3.0, 20.0, 15.0)
    assert sorted({r.label for r in dataset.test}) == [0, 1, 2]  # 1-based class ids -> 0-based labels


def test_boxes_are_optional(tmp_path):
    dataset = read_cub(write_cub(tmp_path, boxes=False))
    assert not dataset.has_boxes
    assert all(r.bbox is None for r in dataset.train + dataset.test)


def test_through_the_plugin_manager(tmp_path):
    write_cub(tmp_path)
    assert load_dataset("cub", tmp_path).name == "cub"
    with pytest.raises(DataError, match="needs a root folder"):
        load_dataset("cub")


def test_not_a_cub_folder(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(DataError, match="is not a CUB-200-2011 folder: expected images.txt"):
        read_cub(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_cub(tmp_path / "absent")


def _replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file_name", "line", "text", "message"),
    [
        ("images.txt", 2, "2", r"images.txt line 2: expected 2 fields '<image id> <path>'"),
        ("bounding_boxes.txt", 3, "3 1 2 3", r"bounding_boxes.txt line 3: expected 5 fields"),
        ("image_class_labels.txt", 4, "4 1 7", r"image_class_labels.txt line 4: expected 2 fields"),
        ("image_class_labels.txt", 1, "1 9", r"image_class_labels.txt line 1: class id 9 is out of range"),
        ("bounding_boxes.txt", 5, "5 2 3 0 15", r"bounding_boxes.txt line 5: box .* has zero size"),
        ("bounding_boxes.txt", 5, "5 -4 3 10 15", r"bounding_boxes.txt line 5: box .* is outside the image"),
        ("bounding_boxes.txt", 5, "5 a b c d", r"bounding_boxes.txt line 5: expected four numbers"),
        ("train_test_split.txt", 2, "2 7", r"train_test_split.txt line 2: image id 2 needs an is_train flag"),
    ],
)
def test_bad_annotation_lines(tmp_path, file_name, line, text, message):
    folder = write_cub(tmp_path)
    _replace_line(folder / file_name, line, text)
    with pytest.raises(DataError, match=message):
        read_cub(folder)
    dataset = read_cub(folder, skip_bad=True)
    assert len(dataset.problems) == 1 and file_name in dataset.problems[0]
    assert len(dataset.train) + len(dataset.test) == 8  # the one bad sample is left out


def test_missing_image_file(tmp_path):
    folder = write_cub(tmp_path)
    missing = folder / "images" / "002.Class_2" / "img_1.png"
    missing.unlink()
    with pytest.raises(DataError, match=r"images.txt line 5: image file .*img_1.png is missing"):
        read_cub(folder)
    dataset = read_cub(folder, skip_bad=True)
    assert [r.path for r in dataset.train + dataset.test if r.path == missing] == []
    assert len(dataset.problems) == 1


def test_box_beyond_the_image_found_by_deep_check(tmp_path):
    folder = write_cub(tmp_path)
    _replace_line(folder / "bounding_boxes.txt", 1, "1 30 3 20 15")  # 30 + 20 > 40 pixels wide
    read_cub(folder)  # annotations alone look fine
    with pytest.raises(DataError, match=r"img_0.png .*line 1\): box .* is outside the 40x30 image"):
        load_dataset("cub", folder, deep=True)
    dataset = load_dataset("cub", folder, deep=True, skip_bad=True)
    assert len(dataset.train) == 5 and len(dataset.problems) == 1
