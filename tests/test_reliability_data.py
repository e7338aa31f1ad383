"""Issue #14, data and export: bad inputs give one clear line (or are handled), never a traceback.

Each test names the issue point it guards. Exit code 2 is a one-line ``error:`` message (an expected
:class:`cqdkit.errors.CqdkitError`); exit code 1 would be a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cqdkit.cli import cli
from cqdkit.data import PairedDataset, load_dataset, load_image
from cqdkit.degradations import PairMaker
from cqdkit.errors import CqdkitError, DataError, SpecError
from cqdkit.images import decode_image
from cqdkit.files import OWNED_LIST
from tests.data_fixtures import write_cub, write_folder, write_image

#: A run of a few seconds on a CUB-layout dataset of 40x30 images.
TINY_RUN = [
    "--image-size", "16",
    "--batch-size", "8",
    "--epochs", "1",
    "--teacher", "convnet-s",
    "--student", "convnet-s",
    "--method", "b",
    "--no-baseline",
    "--degrade", "gray",
    "--quiet",
    "--no-pretrained",  # CUB and folder data default to the paper profile (ImageNet weights)
]

FILE_SETTINGS = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def invoke(*args: object):
    """The CLI as a user runs it: an unexpected exception becomes exit code 1 (a traceback)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 2 with a single ``error:`` line that contains every fragment."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# -- 5. cqdkit export --out: atomic, and never over an unrelated file ----------------------------


def _fake_run(root: Path) -> Path:
    """A run directory with two small trained-looking models, ``a`` and ``b`` (different weights)."""
    import torch

    from cqdkit.models import create_backbone
    from cqdkit.models.weights import save_model

    for seed, method in enumerate(("a", "b")):
        torch.manual_seed(seed)
        backbone = create_backbone("convnet-s", num_classes=3)
        save_model(root / method / "model.safetensors", backbone, {
            "architecture": "convnet-s", "method": method, "num_classes": 3, "in_chans": 3, "image_size": 16,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "classes": ["x", "y", "z"],
        })
    (root / "results.json").write_text(json.dumps({"method": "b"}))
    return root


@pytest.fixture
def fake_run(tmp_path):
    return _fake_run(tmp_path / "run")


def test_export_refuses_to_overwrite_an_unrelated_file_unless_forced(fake_run, tmp_path):  # 5
    out = tmp_path / "out" / "notes.pt"
    out.parent.mkdir()
    out.write_bytes(b"my thesis, not a model")
    result = invoke("export", fake_run, "--format", "torchscript", "--model", "a", "--out", out)
    assert_one_line_error(result, str(out), "not a cqdkit export", "--force")
    assert out.read_bytes() == b"my thesis, not a model"
    assert sorted(p.name for p in out.parent.iterdir() if p.name != OWNED_LIST) == ["notes.pt"]  # no sidecar, no temporary file

    forced = invoke("export", fake_run, "--format", "torchscript", "--model", "a", "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    import torch

    assert torch.jit.load(str(out)) is not None
    assert json.loads((out.parent / "notes.pt.json").read_text())["method"] == "a"
    assert sorted(p.name for p in out.parent.iterdir() if p.name != OWNED_LIST) == ["notes.pt", "notes.pt.json"]


def test_export_refuses_an_unrelated_file_where_its_sidecar_goes(fake_run, tmp_path):  # 5
    out = tmp_path / "model.pt"
    (tmp_path / "model.pt.json").write_text('{"my": "settings"}')
    result = invoke("export", fake_run, "--format", "torchscript", "--model", "a", "--out", out)
    assert_one_line_error(result, "model.pt.json", "--force")
    assert (tmp_path / "model.pt.json").read_text() == '{"my": "settings"}' and not out.exists()


def test_export_replaces_a_previous_export_without_force(fake_run, tmp_path):  # 5
    out = tmp_path / "model.pt"
    first = invoke("export", fake_run, "--format", "torchscript", "--model", "a", "--out", out)
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    second = invoke("export", fake_run, "--format", "torchscript", "--model", "b", "--out", out)
    assert second.exit_code == 0, second.output
    assert json.loads((tmp_path / "model.pt.json").read_text())["method"] == "b"
    assert out.read_bytes() != before
    # the default place, RUN_DIR/export/<model>.pt, too
    for _ in range(2):
        again = invoke("export", fake_run, "--format", "torchscript", "--model", "a")
        assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (fake_run / "export").iterdir() if p.name != OWNED_LIST) == ["a.pt", "a.pt.json"]


def test_export_writes_atomically(fake_run, tmp_path, monkeypatch):  # 5
    import torch

    from cqdkit.export import export_model

    out = tmp_path / "model.pt"
    export_model(fake_run, "torchscript", out, model="a")
    before = out.read_bytes(), (tmp_path / "model.pt.json").read_bytes()

    class Torn:
        def save(self, path: str) -> None:
            Path(path).write_bytes(b"half a model")
            raise RuntimeError("No space left on device")

    monkeypatch.setattr(torch.jit, "trace", lambda *args, **kwargs: Torn())
    with pytest.raises(RuntimeError, match="No space left"):
        export_model(fake_run, "torchscript", out, model="b", force=True)
    assert (out.read_bytes(), (tmp_path / "model.pt.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != OWNED_LIST) == ["model.pt", "model.pt.json", "run"]


def test_export_to_a_place_that_cannot_be_written_is_one_line(fake_run, tmp_path):  # 5
    (tmp_path / "file").write_text("a file, not a folder")
    result = invoke("export", fake_run, "--format", "torchscript", "--model", "a", "--out", tmp_path / "file" / "m.pt")
    assert_one_line_error(result, "cannot write the export", str(tmp_path / "file" / "m.pt"))
    assert (tmp_path / "file").read_text() == "a file, not a folder"


def test_export_model_force_parameter(fake_run, tmp_path):  # 5
    from cqdkit.export import export_model

    out = tmp_path / "model.pt"
    out.write_text("unrelated")
    with pytest.raises(CqdkitError, match="not a cqdkit export"):
        export_model(fake_run, "torchscript", out, model="a")
    assert out.read_text() == "unrelated"
    result = export_model(fake_run, "torchscript", out, model="a", force=True)
    assert result.path == out and result.metadata_path.is_file()


# -- 8. --skip-bad skips images that do not decode ---------------------------------------------


def _cub_with_truncated_jpeg(root: Path) -> tuple[Path, Path]:
    """A tiny CUB folder (3 classes x 4 train + 2 test) whose first training image is a truncated JPEG."""
    folder = write_cub(root, classes=3, train=4, test=2)
    bad = folder / "images" / "001.Class_1" / "img_0.jpg"
    write_image(bad, 64, 48, seed=5)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    (folder / "images" / "001.Class_1" / "img_0.png").unlink()
    images = folder / "images.txt"
    images.write_text(images.read_text().replace("001.Class_1/img_0.png", "001.Class_1/img_0.jpg"))
    return folder, bad


def test_skip_bad_leaves_out_images_that_do_not_decode(tmp_path):  # 8
    folder, bad = _cub_with_truncated_jpeg(tmp_path)
    dataset = load_dataset("cub", folder, skip_bad=True)
    assert bad not in [r.path for r in dataset.train + dataset.test]
    assert len(dataset.train) + len(dataset.test) == 17
    assert len(dataset.problems) == 1 and str(bad) in dataset.problems[0]
    assert "cannot decode" in dataset.problems[0]
    # without skip_bad loading stays lazy; the image is the first decoding error, one line naming it
    lazy = load_dataset("cub", folder)
    assert bad in [r.path for r in lazy.train]
    record = next(r for r in lazy.train if r.path == bad)
    for cache in (None, "memory", tmp_path / "pairs"):
        pairs = PairedDataset([record], "gray", split="train", size=16, crop=True, cache=cache)
        with pytest.raises(DataError, match=r"img_0.jpg: cannot decode the image") as error:
            pairs[0]
        assert "\n" not in str(error.value)


def test_run_skip_bad_skips_an_undecodable_jpeg(tmp_path):  # 8
    folder, bad = _cub_with_truncated_jpeg(tmp_path / "data")
    out = tmp_path / "run"
    result = invoke("run", "--dataset", "cub", "--root", folder, *TINY_RUN, "--skip-bad", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    dataset = json.loads((out / "config.json").read_text())["dataset"]
    assert len(dataset["skipped"]) == 1 and str(bad) in dataset["skipped"][0]
    assert dataset["train"] + dataset["val"] + dataset["test"] == 17
    said = " ".join(result.stderr.split())  # on screen too, not only in config.json
    assert "--skip-bad left out 1 bad sample(s)" in said and str(bad) in said


def test_run_without_skip_bad_stops_at_the_undecodable_jpeg_with_one_line(tmp_path):  # 8
    folder, bad = _cub_with_truncated_jpeg(tmp_path / "data")
    result = invoke("run", "--dataset", "cub", "--root", folder, *TINY_RUN, "--out", tmp_path / "run")
    assert_one_line_error(result, str(bad), "cannot decode the image")


# -- 10. file names that are not UTF-8 ---------------------------------------------------------


def _rename_bytes(path: Path, name: bytes) -> bytes:
    """Rename ``path`` to the byte name ``name`` in the same folder; returns the new full byte path."""
    new = os.fsencode(path.parent) + b"/" + name
    os.rename(os.fsencode(path), new)
    return new


def _latin1_cub(root: Path) -> tuple[Path, bytes]:
    """A CUB folder whose first image is named ``café.png`` in Latin-1, in images.txt and on disk."""
    folder = write_cub(root)
    on_disk = _rename_bytes(folder / "images" / "001.Class_1" / "img_0.png", b"caf\xe9.png")
    images = folder / "images.txt"
    images.write_bytes(images.read_bytes().replace(b"001.Class_1/img_0.png", b"001.Class_1/caf\xe9.png"))
    return folder, on_disk


def test_cub_reads_a_latin1_name_in_images_txt(tmp_path):  # 10
    folder, on_disk = _latin1_cub(tmp_path)
    dataset = load_dataset("cub", folder)
    record = next(r for r in dataset.train if r.id == "1")
    assert os.fsencode(record.path) == on_disk
    assert load_image(record.path).shape == (30, 40, 3)
    for flags in ([], ["--json"], ["--deep"], ["--skip-bad"]):
        result = invoke("inspect", "--dataset", "cub", "--root", folder, *flags)
        assert result.exit_code == 0, (result.output, result.exception)


def test_cub_latin1_name_that_is_not_on_disk_is_one_line_naming_the_line(tmp_path):  # 10
    folder, on_disk = _latin1_cub(tmp_path)
    os.unlink(on_disk)
    with pytest.raises(DataError, match=r"images.txt line 1: image file .*caf\\xe9.png is missing"):
        load_dataset("cub", folder)
    assert_one_line_error(invoke("inspect", "--dataset", "cub", "--root", folder), "images.txt line 1", "missing")
    skipped = invoke("inspect", "--dataset", "cub", "--root", folder, "--skip-bad")
    assert skipped.exit_code == 0 and "caf\\xe9.png" in skipped.output, (skipped.output, skipped.exception)


def test_cub_latin1_class_name(tmp_path):  # 10
    folder = write_cub(tmp_path)
    classes = folder / "classes.txt"
    classes.write_bytes(classes.read_bytes().replace(b"001.Class_1", b"001.Caf\xe9"))
    dataset = load_dataset("cub", folder)
    assert dataset.classes[0] == "001.Caf\\xe9"  # the byte shown as an escape, printable everywhere
    result = invoke("inspect", "--dataset", "cub", "--root", folder)
    assert result.exit_code == 0 and "001.Caf\\xe9" in result.output, (result.output, result.exception)
    result = invoke("inspect", "--dataset", "cub", "--root", folder, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["class_names"][0] == "001.Caf\\xe9"


def test_cub_image_ids_that_are_not_utf8(tmp_path):  # 10
    folder = write_cub(tmp_path)
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"):
        (folder / name).write_bytes(b"\n".join(b"\xe9" + line for line in (folder / name).read_bytes().splitlines()))
    dataset = load_dataset("cub", folder)
    assert dataset.train[0].id == "\\xe91"
    pairs = PairedDataset(dataset.train, "gray", split="train", size=16, crop=True, cache=None)
    assert pairs[0].x.shape == (3, 16, 16)  # the id gives the sample its seed
    assert invoke("inspect", "--dataset", "cub", "--root", folder, "--json").exit_code == 0


def test_annotation_files_with_a_byte_order_mark_are_read(tmp_path):  # 10
    folder = write_cub(tmp_path / "cub")
    for name in ("images.txt", "classes.txt", "image_class_labels.txt", "bounding_boxes.txt"):
        (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())  # as Windows Notepad saves
    dataset = load_dataset("cub", folder)
    assert [r.id for r in dataset.train][:2] == ["1", "2"] and dataset.classes[0] == "001.Class_1"
    root = write_folder(tmp_path / "folder")
    (root / "bboxes.csv").write_bytes(b"\xef\xbb\xbfpath,x,y,width,height\ntrain/cat/0.jpg,1,2,10,12\n")
    assert load_dataset("folder", root).train[0].bbox == (1.0, 2.0, 10.0, 12.0)


def _latin1_folder(root: Path) -> Path:
    """A folder dataset with a class folder ``dög`` and a file ``é0.jpg``, both named in Latin-1."""
    write_folder(root)
    _rename_bytes(root / "train" / "cat" / "0.jpg", b"\xe90.jpg")
    for split in ("train", "test"):
        _rename_bytes(root / split / "dog", b"d\xf6g")
    return root


def test_folder_reads_latin1_names(tmp_path):  # 10
    root = _latin1_folder(tmp_path)
    (root / "bboxes.csv").write_bytes(b"path,x,y,width,height\ntrain/cat/\xe90.jpg,1,2,10,12\n")
    dataset = load_dataset("folder", root)
    assert dataset.classes == ["cat", "d\\xf6g"]
    record = next(r for r in dataset.train if r.path.name.startswith("\udce9"))
    assert record.id == "train/cat/\\xe90.jpg" and record.bbox == (1.0, 2.0, 10.0, 12.0)
    pairs = PairedDataset(dataset.train + dataset.test, "gray", split="train", size=16, cache=None)
    assert len([pairs[i] for i in range(len(pairs))]) == 8  # every id gives a seed, every file decodes
    for flags in ([], ["--json"], ["--deep"]):
        result = invoke("inspect", "--dataset", "folder", "--root", root, *flags)
        assert result.exit_code == 0, (result.output, result.exception)


def test_run_on_a_folder_dataset_with_latin1_names(tmp_path):  # 10
    root = _latin1_folder(tmp_path / "data")
    out = tmp_path / "run"
    result = invoke("run", "--dataset", "folder", "--root", root, *TINY_RUN, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads((out / "b" / "model.json").read_text())["classes"] == ["cat", "d\\xf6g"]


#: File names as bytes: anything a Linux file system allows in a name (not "/" or NUL), UTF-8 or not,
#: without whitespace or control characters at all (CUB's images.txt separates fields with spaces).
FILE_NAMES = (
    st.binary(min_size=1, max_size=16)
    .filter(lambda b: b"/" not in b and b"\0" not in b and not b.startswith(b"."))
    .filter(lambda b: not any(c.isspace() or not c.isprintable() and c < "\udc80"
                              for c in b.decode("utf-8", "surrogateescape")))
    .map(lambda b: b + b".png")
)


@FILE_SETTINGS
@given(name=FILE_NAMES)
def test_any_file_name_on_disk_is_read_by_cub_and_folder(name):  # 10
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        folder = write_cub(root / "cub", classes=2, train=2, test=1)
        on_disk = _rename_bytes(folder / "images" / "001.Class_1" / "img_0.png", name)
        images = folder / "images.txt"
        images.write_bytes(images.read_bytes().replace(b"001.Class_1/img_0.png", b"001.Class_1/" + name))
        record = next(r for r in load_dataset("cub", folder).train if r.id == "1")
        assert os.fsencode(record.path) == on_disk and load_image(record.path).shape == (30, 40, 3)
        assert invoke("inspect", "--dataset", "cub", "--root", folder).exit_code == 0

        plain = write_folder(root / "folder", train=2, test=1)
        assume(not os.path.exists(os.fsencode(plain / "train" / "cat") + b"/" + name))  # e.g. "1.png": taken
        _rename_bytes(plain / "train" / "cat" / "0.jpg", name)
        dataset = load_dataset("folder", plain)
        assert len({r.id for r in dataset.train}) == 4
        for record in dataset.train:
            record.id.encode("utf-8")  # printable: a seed and a JSON string
        assert invoke("inspect", "--dataset", "folder", "--root", plain).exit_code == 0


# -- 11. smaller ones -------------------------------------------------------------------------


def test_folder_image_without_a_box_line_names_the_image_and_the_boxes_file(tmp_path):  # 11a
    root = write_folder(tmp_path)
    (root / "bboxes.csv").write_text("path,x,y,width,height\ntrain/cat/0.jpg,1,2,10,12\n")
    dataset = load_dataset("folder", root)
    record = next(r for r in dataset.train if r.id == "train/cat/1.png")
    assert record.bbox is None
    pairs = PairedDataset([record], "gray", split="train", size=16, crop=True, cache=None)
    with pytest.raises(DataError) as error:
        pairs[0]
    message = str(error.value)
    assert str(record.path) in message and str(root / "bboxes.csv") in message and "box" in message
    assert "\n" not in message


def test_cub_class_without_images_is_a_warning(tmp_path, caplog):  # 11b
    folder = write_cub(tmp_path)
    with (folder / "classes.txt").open("a") as classes:
        classes.write("4 004.Lonely_Class\n")
    with caplog.at_level(logging.WARNING, logger="cqdkit"):
        dataset = load_dataset("cub", folder)
    assert dataset.num_classes == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("cqdkit")]
    assert len(warnings) == 1 and "004.Lonely_Class" in warnings[0].getMessage()
    assert "no images" in warnings[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cqdkit"):
        load_dataset("cub", write_cub(tmp_path / "complete"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    test_only = write_cub(tmp_path / "test-only")  # class 3's images (ids 7 to 9) all in the test split
    split = test_only / "train_test_split.txt"
    split.write_text(split.read_text().replace("7 1\n", "7 0\n").replace("8 1\n", "8 0\n"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cqdkit"):
        load_dataset("cub", test_only)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1 and "003.Class_3" in messages[0] and "no training images (3 test images)" in messages[0]


@pytest.mark.parametrize("spec, view", [("lowres:size=224", 224), ("lowres:size=300", 64), ("lowres:size=223", 32),
                                        ("gray+lowres:size=1000", 16)])
def test_lowres_size_at_or_above_the_view_is_refused(spec, view):  # 11c
    with pytest.raises(SpecError) as error:
        PairMaker(spec, size=view)
    message = str(error.value)
    size = spec.split("size=")[1]
    assert f"lowres:size={size}" in message and f"{view}-pixel" in message and "expected" in message
    assert "\n" not in message


@pytest.mark.parametrize("spec, view", [("lowres", 224), ("lowres:size=50", 16), ("lowres:size=220", 32),
                                        ("lowres:size=223", 224)])
def test_lowres_sizes_that_shrink_the_view_are_accepted(spec, view):  # 11c
    PairMaker(spec, size=view)


def test_lowres_size_above_the_view_is_one_line_in_the_cli(tmp_path):  # 11c
    write_image(tmp_path / "bird.png", 40, 30)
    result = invoke("degrade", "lowres:size=500", tmp_path / "bird.png", "--size", "64", "--out", tmp_path / "out")
    assert_one_line_error(result, "lowres:size=500", "64-pixel")
    assert not (tmp_path / "out").exists()


def test_cub_image_with_two_box_lines_is_a_bad_line(tmp_path):  # found while testing: the last box won silently
    folder = write_cub(tmp_path)
    boxes = folder / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text() + "1 0 0 10 10\n")
    with pytest.raises(DataError, match=r"bounding_boxes.txt line 10: image id 1 appears twice"):
        load_dataset("cub", folder)
    dataset = load_dataset("cub", folder, skip_bad=True)
    assert "1" not in [r.id for r in dataset.train + dataset.test] and len(dataset.problems) == 1


# -- handled cases stay handled ----------------------------------------------------------------

_TOKENS = st.sampled_from(["1", "2", "9", "0", "-1", "1.5", "nan", "inf", "-inf", "1e309", "１", "0x10", "abc",
                           "001.Class_1/img_0.png", "../../etc/passwd", "images", "", "\t", "\u00a0", "é",
                           "\u2028", "\x0c", "\x1c"])
_LINES = st.one_of(
    st.lists(_TOKENS, min_size=0, max_size=7).map(lambda tokens: " ".join(tokens).encode("utf-8")),
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(
    file_name=st.sampled_from(["images.txt", "bounding_boxes.txt", "image_class_labels.txt"]),
    line=_LINES,
    position=st.integers(0, 9),
)
def test_garbage_lines_in_cub_files_are_a_data_error_naming_file_and_line(cub_template, file_name, line, position):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "CUB_200_2011"
        shutil.copytree(cub_template, folder)
        path = folder / file_name
        lines = path.read_bytes().splitlines()
        lines.insert(position, line.replace(b"\n", b" ").replace(b"\r", b" "))
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            load_dataset("cub", folder)
        except DataError as error:
            message = str(error)
            assert "\n" not in message and "Traceback" not in message
            assert any(f"{folder / name} line " in message
                       for name in ("images.txt", "bounding_boxes.txt", "image_class_labels.txt")), message
        for flag in ([], ["--skip-bad"]):
            result = invoke("inspect", "--dataset", "cub", "--root", folder, *flag)
            assert result.exit_code in (0, 2), (result.output, result.exception)


@pytest.fixture(scope="module")
def cub_template(tmp_path_factory):
    return write_cub(tmp_path_factory.mktemp("cub-template"))


_MAGIC = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"GIF89a", b"GIF87a",
                          b"BM", b"P6\n", b"P5 2 2 255\n", b"II*\x00", b"MM\x00*", b"RIFF\x10\x00\x00\x00WEBPVP8 ",
                          b"\x00\x00\x01\x00", b"8BPS", b"\x0a\x05\x01\x08"])


@settings(max_examples=300, deadline=None)
@given(magic=_MAGIC, data=st.binary(max_size=300), suffix=st.sampled_from([".jpg", ".png", ".gif", ".bmp", ".tif"]))
def test_random_bytes_as_an_image_are_a_data_error_naming_the_file(magic, data, suffix):
    with tempfile.TemporaryDirectory() as temporary:
        path = Path(temporary) / f"image{suffix}"
        path.write_bytes(magic + data)
        try:
            image, size = decode_image(path)
        except DataError as error:
            assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
        else:
            assert image.ndim == 3 and image.shape[2] == 3 and image.size > 0


# -- found by benchmarks/reliability_sweep.py ------------------------------------------------------------------


def test_cars_bad_test_flag_is_skipped_and_listed_with_skip_bad(tmp_path):
    import numpy as np
    import scipy.io

    from tests.data_fixtures import struct_array, write_cars_combined

    root = write_cars_combined(tmp_path / "cars", count=6)
    content = scipy.io.loadmat(root / "cars_annos.mat", squeeze_me=True, struct_as_record=True)
    rows = [{name: row[name] for name in content["annotations"].dtype.names} for row in content["annotations"]]
    rows[1]["test"] = "maybe"
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(rows), "class_names": content["class_names"]})
    with pytest.raises(DataError, match=r"cars_annos.mat annotation 2: field test must be an integer, got 'maybe'"):
        load_dataset("cars", root)
    dataset = load_dataset("cars", root, skip_bad=True)
    assert len(dataset.train) + len(dataset.test) == 5
    assert any("annotation 2" in problem for problem in dataset.problems)
    assert np.all([record.id != "car_ims/000002.jpg" for record in dataset.train + dataset.test])


def test_folder_dangling_link_named_like_an_image_is_a_problem_not_a_silent_skip(tmp_path):
    root = write_folder(tmp_path / "data")
    link = root / "train" / "cat" / "gone.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DataError, match=r"gone.jpg: a link to .*nowhere.jpg, which does not exist"):
        load_dataset("folder", root)
    dataset = load_dataset("folder", root, skip_bad=True)
    assert len(dataset.train) == 6 and any("gone.jpg" in problem for problem in dataset.problems)


@pytest.mark.parametrize("command", ["table", "tune"])
@pytest.mark.parametrize("degrade", [",", "", " , "])
def test_no_degradation_at_all_is_one_line(tmp_path, command, degrade):
    assert_one_line_error(invoke(command, "--degrade", degrade, "--out", tmp_path / "out"), "--degrade", "no degradation given")
    assert not (tmp_path / "out" / "tune.json").exists()


def test_an_absurd_tps_grid_is_refused_before_any_memory_is_taken(tmp_path):
    write_image(tmp_path / "bird.png")
    assert_one_line_error(invoke("degrade", "tps:grid=3000", tmp_path / "bird.png", "--out", tmp_path / "look"),
                          "grid", "3000", "from 2 to 64")
