"""``cqdkit degrade``: pairs and grid written as PNG, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cqdkit.cli.degrade import degrade
from cqdkit.errors import DataError, SpecError
from cqdkit.testing.degradations import sample_bird
from cqdkit.files import OWNED_LIST


@pytest.fixture()
def bird_file(tmp_path):
    image, box = sample_bird(120, 160)
    path = tmp_path / "bird.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path, image, box


def test_writes_pairs_and_grid(tmp_path, bird_file):
    path, image, box = bird_file
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), image[:, :, 0])
    out = tmp_path / "out"
    bbox = ",".join(f"{v:.1f}" for v in box)
    result = CliRunner().invoke(
        degrade, ["localization+tps", str(path), str(gray), "--out", str(out), "--size", "48", "--bbox", bbox]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir() if p.name != OWNED_LIST)
    assert written == ["bird_x.png", "bird_z.png", "gray_x.png", "gray_z.png", "grid.png"]
    x = cv2.cvtColor(cv2.imread(str(out / "bird_x.png")), cv2.COLOR_BGR2RGB)
    from cqdkit.degradations import make_pair

    rounded_box = [float(v) for v in bbox.split(",")]
    expected_x, expected_z = make_pair("localization+tps", image, bbox=rounded_box, size=48)
    assert np.array_equal(x, expected_x)
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape == (2 * 48 + 4, 2 * 48 + 4, 3)  # top row x, bottom row z, 4-px white gaps
    z = cv2.cvtColor(grid[52:, :48], cv2.COLOR_BGR2RGB)
    assert np.array_equal(z, expected_z)
    assert "localization" in result.output and "grid.png" in result.output


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    for path, message in ((corrupt, "corrupt.jpg"), (tmp_path / "nope.png", "does not exist")):
        result = CliRunner().invoke(degrade, ["lowres", str(path), "--out", str(tmp_path / "out")])
        assert isinstance(result.exception, DataError)
        assert message in str(result.exception)


def test_bad_bbox_and_spec(tmp_path, bird_file):
    path = str(bird_file[0])
    result = CliRunner().invoke(degrade, ["lowres", path, "--out", str(tmp_path), "--bbox", "1,2,3"])
    assert isinstance(result.exception, SpecError) and "X,Y,W,H" in str(result.exception)
    result = CliRunner().invoke(degrade, ["lowres:size=x", path, "--out", str(tmp_path)])
    assert isinstance(result.exception, SpecError)
