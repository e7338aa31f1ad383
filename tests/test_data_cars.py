"""The Stanford Cars reader, on tiny folders with .mat files written by scipy.io.savemat."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from cqdkit.data import load_dataset, read_cars
from cqdkit.errors import DataError
from tests.data_fixtures import cars_rows, struct_array, write_cars_combined, write_cars_devkit


def test_devkit_form(tmp_path):
    dataset = read_cars(write_cars_devkit(tmp_path, train=4, test=2, classes=2))
    assert dataset.classes == ["Car Model 1", "Car Model 2"]
    assert len(dataset.train) == 4 and len(dataset.test) == 2 and dataset.has_boxes
    assert [r.label for r in dataset.train] == [0, 1, 0, 1]  # 1-based classes -> 0-based labels
    # inclusive 1-based corners (3, 4)-(22, 18) -> 0-based (x, y, width, height)
    assert dataset.train[0].bbox == (2.0, 3.0, 20.0, 15.0)
    assert dataset.train[0].id == "cars_train/cars_train_00000.jpg"
    assert all(isinstance(v, float) for v in dataset.train[0].bbox)


def test_combined_form(tmp_path):
    dataset = read_cars(write_cars_combined(tmp_path, count=6))
    assert dataset.classes == ["Car 1", "Car 2"]
    assert [r.id for r in dataset.test] == ["car_ims/000001.jpg", "car_ims/000004.jpg"]
    assert len(dataset.train) == 4
    assert dataset.test[0].bbox == (0.0, 0.0, 40.0, 30.0)  # the whole 40x30 image


def test_through_the_plugin_manager(tmp_path):
    write_cars_combined(tmp_path)
    assert load_dataset("cars", tmp_path, deep=True).problems == []


def test_uint8_fields_are_converted_before_arithmetic(tmp_path):
    root = write_cars_devkit(tmp_path)
    rows = cars_rows("cars_train", 4)
    rows[1]["bbox_x1"], rows[1]["bbox_x2"] = np.uint8(10), np.uint8(5)  # uint8 5 - 10 would wrap to 251
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(rows)})
    with pytest.raises(DataError, match=r"cars_train_annos.mat annotation 2: box .* has zero size"):
        read_cars(root)
    dataset = read_cars(root, skip_bad=True)
    assert len(dataset.train) == 3 and len(dataset.problems) == 1


def test_class_out_of_range(tmp_path):
    root = write_cars_devkit(tmp_path)
    rows = cars_rows("cars_test", 2)
    rows[0]["class"] = np.uint8(3)
    scipy.io.savemat(root / "cars_test_annos_withlabels.mat", {"annotations": struct_array(rows)})
    with pytest.raises(DataError, match=r"annotation 1: class 3 is out of range; expected 1 to 2"):
        read_cars(root)


def test_missing_image_and_missing_field(tmp_path):
    root = write_cars_devkit(tmp_path)
    (root / "cars_test" / "cars_test_00001.jpg").unlink()
    with pytest.raises(DataError, match=r"annotation 2: image file .*cars_test_00001.jpg is missing"):
        read_cars(root)
    rows = [{k: v for k, v in row.items() if k != "fname"} for row in cars_rows("cars_train", 2)]
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(rows)})
    with pytest.raises(DataError, match=r"'annotations' lacks the field\(s\) fname"):
        read_cars(root)


def test_not_a_cars_folder_and_corrupt_mat(tmp_path):
    with pytest.raises(DataError, match=r"is not a Stanford Cars folder: expected devkit/cars_meta.mat"):
        read_cars(tmp_path)
    (tmp_path / "cars_annos.mat").write_bytes(b"not a matlab file at all")
    with pytest.raises(DataError, match=r"cars_annos.mat: cannot read the MATLAB file"):
        read_cars(tmp_path)
