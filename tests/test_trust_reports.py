"""Issue #25: ``report``, ``explain``, ``export`` and the predictor trust no file, and never write over a user's.

Every file they read (results.json, config.json, log.jsonl, model.json, table.json, router.json) is checked for
what they rely on, and anything else is one ``error:`` line naming the file, the field and the value; their
outputs are checked to be cqdkit's to write before anything is written. ``tune`` refuses settings it cannot
tune with before training.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqdkit.cli import cli
from cqdkit.errors import CqdkitError, DataError
from cqdkit.lock import LOCK_NAME

from .test_run_cli import TINY

TINY_1 = [*TINY, "--epochs", "1", "--no-pretrained"]  # the later --epochs wins


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result) -> str:
    """The message of a clean refusal: exit status 2, one ``error:`` line, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))
        yield


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache) -> Path:
    """A finished tiny run: A, B and A+CQD, one epoch each (never changed: tests change copies)."""
    out = tmp_path_factory.mktemp("trust") / "run"
    result = CliRunner().invoke(cli, ["run", "--degrade", "lowres", *TINY_1, "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run(finished, tmp_path, cache) -> Path:
    """A copy of the finished run to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns(LOCK_NAME, "report", "export", "explain"))
    return copy


def edit(path: Path, change) -> None:
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != LOCK_NAME)


# -- report: results.json, config.json, log.jsonl, model.json ---------------------------------------------------


def _set(*keys, value):
    def change(payload):
        for key in keys[:-1]:
            payload = payload[key]
        payload[keys[-1]] = value
    return change


@pytest.mark.parametrize("file, change, named", [
    ("results.json", _set("models", "b", "test_z", value="0.4"), 'field models.b.test_z must be an accuracy'),
    ("results.json", _set("models", "b", "test_z", value=1.5), "field models.b.test_z must be an accuracy"),
    ("results.json", _set("models", value={}), "field models must be a non-empty object"),
    ("results.json", _set("method", value="cqd"), 'field method must be the student\'s method, one of the models it '
                                                  'lists (a, a-cqd, b), got "cqd"'),
    ("results.json", _set("baseline", value="a-b"), 'field baseline must be the baseline\'s method'),
    ("results.json", _set("gain", value="big"), 'field gain must be a difference of accuracies'),
    ("results.json", _set("gain", value=0.75), "field gain must be models.a-cqd.test_z - models.b.test_z"),
    ("results.json", _set("models", "../../etc", value={"test_x": 0.5, "test_z": 0.5}), "field models must be named"),
    ("config.json", _set("run", "image_size", value="abc"), "field run.image_size must be an integer"),
    ("config.json", _set("run", "image_size", value=100000), "field run.image_size must be an input size from 8 to"),
    ("config.json", _set("dataset", "classes", value="three"), "field dataset.classes must be an integer >= 1"),
    ("config.json", _set("dataset", "classes", value=5), "field dataset.classes must be 3, the number of class names"),
    ("b/model.json", _set("image_size", value=100000), "field image_size must be an image size from 8 to"),
    ("b/model.json", _set("image_size", value=0), "field image_size must be an image size from 8 to"),
    ("b/model.json", _set("classes", value=["one"]), 'field classes must be a list of 3 class names (num_classes is 3), '
                                                     'got ["one"]'),
    ("a/model.json", _set("mean", value=[0.5, "x", 0.5]), "field mean must be a list of 3 finite numbers"),
    ("a-cqd/model.json", _set("pipeline", "size", value=64), "field pipeline.size must be 32, the model's image_size"),
])
def test_a_report_of_a_broken_run_is_one_line_naming_the_file_and_field(run, file, change, named):
    edit(run / file, change)
    before = files_under(run)
    message = one_line_error(invoke("report", run, "--examples", "2", "--quiet"))
    assert f"{run / file}: " in message and named in message, message
    assert files_under(run) == before  # no page, no figure


def test_the_image_size_limit_named_is_cqdkits(run):
    from cqdkit.schema import image_size_limits

    low, high = image_size_limits()
    edit(run / "b" / "model.json", _set("image_size", value=high + 1))
    message = one_line_error(invoke("report", run, "--examples", "0", "--quiet"))
    assert f"from {low} to {high} pixels (cqdkit's largest accepted image size is {high}), got {high + 1}" in message
    edit(run / "b" / "model.json", _set("image_size", value=32))  # the trained size again: sound
    assert invoke("report", run, "--examples", "0", "--quiet").exit_code == 0


@pytest.mark.parametrize("lines, named", [
    ('{"epoch": 1, "loss": "x"}\n', 'field loss (line 1) must be a number (or NaN) or null, got "x"'),
    ('{"epoch": 2, "loss": 1}\n{"epoch": 1, "loss": 1}\n', "field epoch (line 2) must be an epoch number after 2"),
    ('{"epoch": true}\n', "field epoch (line 1) must be an epoch number after 0"),
    ('{"epoch": 1, "train_acc": 7}\n', "field train_acc (line 1) must be an accuracy"),
])
def test_a_broken_log_is_refused(run, lines, named):
    (run / "b" / "log.jsonl").write_text(lines)
    message = one_line_error(invoke("report", run, "--examples", "0", "--quiet"))
    assert f"{run / 'b' / 'log.jsonl'}: {named}" in message, message


WRONG = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.none())
#: What each field of results.json must not be (beside what WRONG gives).
WRONG_VALUES = {
    ("models", "b", "test_z"): st.one_of(WRONG, st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 1)),
    ("models", "a", "test_x"): st.one_of(WRONG, st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 1)),
    ("models", "b", "test_z_nll"): st.one_of(WRONG.filter(lambda v: v is not None),
                                             st.floats(max_value=-1e-9, allow_nan=False)),
    ("gain",): st.one_of(WRONG, st.floats(allow_nan=False).filter(lambda v: abs(v) > 1)),
    ("method",): st.one_of(WRONG, st.integers(), st.sampled_from(["cqd", "a-b", ""])),
    ("baseline",): st.one_of(WRONG.filter(lambda v: v is not None), st.sampled_from(["cqd", "A"])),
    ("models",): st.one_of(WRONG, st.just({}), st.just({"b": 0.5})),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(WRONG_VALUES)), data=st.data())
def test_any_results_json_value_of_the_wrong_kind_is_refused_naming_the_file_and_field(field, data):
    from cqdkit.report import read_folder

    value = data.draw(WRONG_VALUES[field], label="value")
    results = {"models": {"a": {"test_x": 0.75, "test_z": 0.25}, "b": {"test_x": 0.5, "test_z": 0.5,
                                                                       "test_z_nll": 1.0},
                          "a-cqd": {"test_x": 0.5, "test_z": 0.75}},
               "method": "a-cqd", "baseline": "b", "gain": 0.25}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "config.json").write_text('{"run": {}}')
        (folder / "results.json").write_text(json.dumps(results))
        read_folder(folder)  # sound as it is
        _set(*field, value=value)(results)
        (folder / "results.json").write_text(json.dumps(results))
        with pytest.raises(DataError) as refused:
            read_folder(folder)
    message = str(refused.value)
    assert message.startswith(f"{folder / 'results.json'}: ") and "\n" not in message
    assert f"field {'.'.join(field)}" in message or f"field {field[0]}" in message, message


# -- report: table.json -----------------------------------------------------------------------------------------


def _table() -> dict:
    stats = {"mean": 0.5, "std": 0.1, "n": 2}
    rows = ["A/A", "A/B", "B/B", "A→B/B", "CQD/B", "A+CQD/B", "gap closed by A+CQD"]
    return {"rows": rows, "degradations": ["gray"], "seeds": [0, 1], "teacher": "convnet-s", "student": "convnet-s",
            "dataset": "synthetic", "table": {"gray": {**{row: dict(stats) for row in rows[:-1]},
                                                       rows[-1]: {"mean": math.nan, "std": math.nan, "n": 2}}},
            "raw": {"gray": {row: [0.4, 0.6] for row in rows[:-1]}},
            "settings": {"gray": {"epochs": 1, "pipeline": {"spec": "gray", "ops": [{"name": "gray"}]},
                                  "cqd": {"temperature": 10.0, "lam": 20.0}}}}


@pytest.mark.parametrize("change, named", [
    (_set("table", "gray", "B/B", "mean", value="x"), "field table.gray.B/B.mean must be an accuracy"),
    (_set("table", "gray", "B/B", "n", value=3), "field table.gray.B/B.n must be a number of seeds from 1 to 2"),
    (_set("degradations", value=["gray", "tps"]), "field table.tps is missing"),
    (_set("seeds", value=[0, 0]), "field seeds must be a non-empty list of distinct seeds"),
    (_set("raw", "gray", "B/B", value=[0.4, "x"]), "field raw.gray.B/B must be a list of at most 2 accuracies"),
    (_set("settings", "gray", "cqd", "temperature", value=None), "field settings.gray.cqd.temperature must be"),
    (_set("table", "gray", "no such row", value=None), "field table.gray.no such row must be a cell of one of the rows"),
])
def test_a_broken_table_json_is_refused(tmp_path, change, named):
    (tmp_path / "table.json").write_text(json.dumps(_table()))
    assert invoke("report", tmp_path).exit_code == 0  # the sound one has its page
    table = _table()
    change(table)
    (tmp_path / "table.json").write_text(json.dumps(table))
    shutil.rmtree(tmp_path / "report")
    message = one_line_error(invoke("report", tmp_path))
    assert f"{tmp_path / 'table.json'}: {named}" in message, message
    assert not (tmp_path / "report").exists()


# -- report and explain: a user's files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["index.html", "curves.png", "per-class.png", "examples/z-01.png"])
def test_report_refuses_a_users_file_up_front_and_writes_nothing(finished, tmp_path, name):
    out = tmp_path / "mine"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("the user's own")
    (out / "notes.md").write_text("mine too")
    before = files_under(out)
    message = one_line_error(invoke("report", finished, "--out", out, "--examples", "2", "--quiet"))
    assert f"{out / name} is a file that cqdkit did not write" in message
    assert files_under(out) == before and (out / name).read_text() == "the user's own"


def test_report_writes_over_its_own_files(finished, tmp_path):
    out = tmp_path / "report"
    assert invoke("report", finished, "--out", out, "--examples", "1", "--quiet").exit_code == 0
    assert invoke("report", finished, "--out", out, "--examples", "1", "--quiet").exit_code == 0


@pytest.mark.parametrize("name", ["report.md", "tau.png", "saliency.png"])
def test_explain_refuses_a_users_file_before_anything_trains(run, tmp_path, name):
    from cqdkit.cli.explain import explain

    shutil.rmtree(run / "b")  # explain would have to train B: it must not get that far
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own")
    result = CliRunner().invoke(explain, [str(run), "--out", str(out), "--quiet", "--images", "2"])
    assert isinstance(result.exception, CqdkitError), result.output
    assert f"{out / name} is a file that cqdkit did not write" in str(result.exception)
    assert files_under(out) == [name] and not (run / "b").exists()


@pytest.mark.parametrize("file, change, named", [
    ("config.json", _set("run", "image_size", value=0), "field run.image_size must be an input size from 8 to"),
    ("a-cqd/model.json", _set("classes", value=["one"]), "field classes must be a list of 3 class names"),
])
def test_explain_refuses_a_broken_run_before_anything_trains(run, file, change, named):
    from cqdkit.cli.explain import explain

    edit(run / file, change)
    shutil.rmtree(run / "b")
    result = CliRunner().invoke(explain, [str(run), "--quiet", "--images", "2"])
    assert isinstance(result.exception, DataError), result.output
    assert f"{run / file}: {named}" in str(result.exception)
    assert not (run / "b").exists() and not (run / "explain").exists()


# -- export and the predictor -------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, named", [
    (_set("classes", value=["one"]), 'field classes must be a list of 3 class names (num_classes is 3), got ["one"]'),
    (_set("classes", value=None), "field classes must be a list of 3 class names"),
    (_set("image_size", value=100000), "field image_size must be an image size from 8 to"),
    (_set("image_size", value=0), "field image_size must be an image size from 8 to"),
    (_set("num_classes", value=True), "field num_classes must be a number of classes"),
])
def test_export_refuses_a_model_json_that_does_not_describe_the_model(run, tmp_path, change, named):
    edit(run / "a-cqd" / "model.json", change)
    out = tmp_path / "student.pt"
    message = one_line_error(invoke("export", run, "--format", "torchscript", "--out", out))
    assert f"{run / 'a-cqd' / 'model.json'}: {named}" in message, message
    assert not out.exists() and not out.with_name("student.pt.json").exists()


def test_export_refuses_a_results_json_whose_student_it_does_not_list(run, tmp_path):
    edit(run / "results.json", _set("method", value="cqd"))
    message = one_line_error(invoke("export", run, "--format", "torchscript", "--out", tmp_path / "s.pt"))
    assert f"{run / 'results.json'}: field method must be the student's method" in message


def test_the_predictor_refuses_a_model_json_that_does_not_describe_the_model(run):
    from cqdkit.predictor import load_predictor

    edit(run / "b" / "model.json", _set("classes", value=["one", "two"]))
    with pytest.raises(DataError, match="field classes must be a list of 3 class names"):
        load_predictor(run, "b")
    edit(run / "b" / "model.json", _set("classes", value=["x", "y", "z"]))
    edit(run / "b" / "model.json", lambda d: d.pop("pipeline"))
    with pytest.raises(DataError, match="field pipeline must be the degradation pipeline"):
        load_predictor(run, "b")


def test_a_router_json_is_checked_like_a_model_json(tmp_path):
    from cqdkit.schema import check_router_description

    router = {"num_classes": 3, "image_size": 32, "qualities": ["hq", "lq"], "experts": [{}, {}],
              "info": {"classes": ["a", "b", "c"]}}
    check_router_description(tmp_path / "router.json", router)
    with pytest.raises(DataError, match=r"router.json: field info.classes must be a list of 3 class names"):
        check_router_description(tmp_path / "router.json", {**router, "info": {"classes": ["a"]}})
    with pytest.raises(DataError, match=r"router.json: field image_size must be an image size"):
        check_router_description(tmp_path / "router.json", {**router, "image_size": 10**6})


def test_loading_a_router_checks_its_description(tmp_path):
    from cqdkit.routing.router import FORMAT, VERSION, QualityRouter

    description = {"format": FORMAT, "version": VERSION, "num_classes": 3, "image_size": 10**6,
                   "qualities": ["hq", "lq"], "experts": [{}, {}], "info": {"classes": ["a", "b", "c"]}}
    (tmp_path / "router.json").write_text(json.dumps(description))
    with pytest.raises(DataError, match="field image_size must be an image size"):
        QualityRouter.load(tmp_path / "router.safetensors")


def test_an_export_after_a_killed_one_leaves_no_temporary(finished, tmp_path):
    out = tmp_path / "export" / "student.pt"
    out.parent.mkdir()
    stale = out.parent / ".student.pt.abc123.cqdkit-tmp"  # what a writer killed with -9 leaves
    stale.write_bytes(b"half an export")
    result = invoke("export", finished, "--format", "torchscript", "--out", out)
    assert result.exit_code == 0, result.output
    assert not list(out.parent.glob("*.cqdkit-tmp")) and out.exists()


# -- tune -------------------------------------------------------------------------------------------------------


def test_tune_without_a_validation_split_is_refused(tmp_path, cache):
    out = tmp_path / "tune"
    message = one_line_error(invoke("tune", "--degrade", "gray", "--method", "cqd", "--seeds", "1", *TINY_1,
                                    "--val-fraction", "0", "--temperatures", "1", "--lambdas", "1", "--out", out))
    assert "--val-fraction 0: tune chooses T and lambda on the validation split" in message
    assert not out.exists()


def test_tune_of_a_cqd_across_architectures_is_refused(tmp_path, cache):
    out = tmp_path / "tune"
    message = one_line_error(invoke("tune", "--degrade", "gray", "--method", "a-cqd", "--seeds", "1", *TINY_1,
                                    "--student", "convnet-m", "--temperatures", "1", "--lambdas", "1", "--out", out))
    assert "--method a-cqd: nothing to tune with --teacher convnet-s and --student convnet-m" in message
    assert not out.exists()


def test_tune_grids_keep_each_value_once_and_skip_what_the_architectures_forbid():
    from cqdkit.train.config import RunConfig
    from cqdkit.train.tune import check_grid

    base = RunConfig(teacher="convnet-s", student="convnet-m", epochs=1, image_size=32)
    methods, temperatures, lambdas = check_grid(base, ("cqd", "a-cqd", "cqd"), (0, 1), (2.0, 2.0, 1.0),
                                                (5.0, 5.0, 0.0))
    assert methods == ("cqd",) and temperatures == (2.0, 1.0) and lambdas == (0.0, 5.0)
    with pytest.raises(CqdkitError, match="--seeds: 0, 0 repeats a seed"):
        check_grid(base, ("cqd",), (0, 0), (1.0,), (1.0,))
    with pytest.raises(CqdkitError, match="--method: 'b' is not a distilled method"):
        check_grid(base, ("b",), (0,), (1.0,), (1.0,))
    with pytest.raises(CqdkitError, match="--method: no method to tune"):
        check_grid(base, (), (0,), (1.0,), (1.0,))


@pytest.mark.parametrize("option, value, named", [
    ("--seeds", "1001", "1001 is not in the range 1<=x<=1000"),
    ("--temperatures", "0", "--temperatures: 0.0 is not a temperature"),
    ("--lambdas", "inf", "--lambdas: inf is not a lambda"),
    ("--epochs", "0", "--epochs must be at least 1"),
])
def test_tune_edge_values_are_refused_before_anything_is_written(tmp_path, cache, option, value, named):
    out = tmp_path / "tune"
    grid = {"--seeds": "1", "--temperatures": "1", "--lambdas": "1", option: value}
    result = invoke("tune", "--degrade", "gray", "--method", "cqd", *TINY_1, "--seeds", grid["--seeds"],
                    "--temperatures", grid["--temperatures"], "--lambdas", grid["--lambdas"],
                    *([option, value] if option == "--epochs" else []), "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert named in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize("name", ["a-cqd/model.json", "results.json", "a-cqd/log.jsonl"])
def test_a_fifo_among_a_runs_files_is_refused_not_waited_on(run, tmp_path, name):
    import os
    import subprocess
    import sys

    (run / name).unlink()
    os.mkfifo(run / name)
    command = "export" if name != "a-cqd/log.jsonl" else "report"
    extra = ["--out", str(tmp_path / "m.onnx")] if command == "export" else ["--examples", "0"]
    done = subprocess.run([sys.executable, "-m", "cqdkit", command, str(run), *extra], capture_output=True, text=True,
                          timeout=120)  # a reader waiting on the FIFO would be killed here, failing the test
    assert done.returncode == 2 and "not a regular file" in done.stderr and name.split("/")[-1] in done.stderr, \
        done.stderr


def test_a_nan_accuracy_in_a_run_whose_models_all_see_both_views_is_refused(run):
    edit(run / "results.json", _set("models", "b", "test_x", value=math.nan))
    message = one_line_error(invoke("report", run, "--examples", "0"))
    assert "results.json" in message and "models.b.test_x is NaN" in message


def test_the_predictor_refuses_a_fifo_as_its_model_description(run):
    import os
    from concurrent.futures import ThreadPoolExecutor, TimeoutError

    from cqdkit.predictor import load_predictor

    (run / "a-cqd" / "model.json").unlink()
    os.mkfifo(run / "a-cqd" / "model.json")
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(load_predictor, run, "a-cqd")
        try:
            error = loading.exception(timeout=60)
        except TimeoutError:  # it waits on the FIFO: give it an end so the thread finishes, and fail
            with open(run / "a-cqd" / "model.json", "w") as writer:
                writer.write("{}")
            pytest.fail("load_predictor waited on a FIFO")
    assert isinstance(error, DataError) and "not a regular file" in str(error)
