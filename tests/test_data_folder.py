"""The image-folder reader: ROOT/train/<class>/*, ROOT/test/<class>/*, optional bboxes.csv."""

from __future__ import annotations

import pytest

from cqdkit.data import load_dataset, read_folder
from cqdkit.errors import DataError
from tests.data_fixtures import write_folder, write_image


def test_reads_classes_and_splits(tmp_path):
    root = write_folder(tmp_path, classes=("dog", "cat"), train=3, test=1)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"")
    dataset = read_folder(root)
    assert dataset.classes == ["cat", "dog"]  # sorted
    assert len(dataset.train) == 6 and len(dataset.test) == 2
    assert not dataset.has_boxes
    assert dataset.train[0].id == "train/cat/0.jpg" and dataset.train[0].label == 0
    assert {r.label for r in dataset.test} == {0, 1}


def test_bboxes_csv(tmp_path):
    root = write_folder(tmp_path)
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/cat/0.jpg,1,2,10,12\n")
    dataset = load_dataset("folder", root)
    assert dataset.has_boxes
    boxes = {r.id: r.bbox for r in dataset.train}
    assert boxes["train/cat/0.jpg"] == (1.0, 2.0, 10.0, 12.0)
    assert boxes["train/cat/1.png"] is None


@pytest.mark.parametrize(
    ("csv_line", "message", "kept"),
    [
        ("train/cat/0.jpg,1,2,10", r"bboxes.csv line 2: expected 5 fields", 5),
        ("train/cat/0.jpg,1,2,0,12", r"bboxes.csv line 2: box .* has zero size", 5),
        ("train/cat/9.jpg,1,2,10,12", r"box for 'train/cat/9.jpg', which is not an image", 6),
    ],
)
def test_bad_bboxes_csv_lines(tmp_path, csv_line, message, kept):
    root = write_folder(tmp_path)
    (root / "bboxes.csv").write_text(f"path,x,y,width,height\n{csv_line}\n")
    with pytest.raises(DataError, match=message):
        read_folder(root)
    dataset = read_folder(root, skip_bad=True)
    assert len(dataset.problems) == 1
    assert len(dataset.train) == kept  # an image whose box line is bad is left out


def test_empty_class_folder(tmp_path):
    root = write_folder(tmp_path)
    (root / "train" / "emu").mkdir()
    with pytest.raises(DataError, match=r"train/emu: class folder is empty; expected image files"):
        read_folder(root)
    dataset = read_folder(root, skip_bad=True)
    assert dataset.classes == ["cat", "dog"] and len(dataset.problems) == 1


def test_test_class_without_train_folder(tmp_path):
    root = write_folder(tmp_path)
    write_image(root / "test" / "emu" / "0.png")
    with pytest.raises(DataError, match=r"class 'emu' has no train/ folder"):
        read_folder(root)


def test_not_a_folder_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"is not an image folder dataset: expected .*train/<class name>"):
        read_folder(tmp_path)
