"""Issue #25, kinds 4 and 5: absurd sizes and numbers are refused before anything is allocated, and every
setting's type is checked (config files included), with the setting, the value and the limit named."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.errors import CqdkitError, SpecError
from cqdkit.plugin.params import split_specs
from cqdkit.train.config import MAX_IMAGE_SIZE, RunConfig, check_type

from .cli_checks import invoke, one_line_error


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


# -- absurd sizes and numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value, named", [
    ("--image-size", 100000, "--image-size"),
    ("--batch-size", 2**63, "--batch-size"),
    ("--epochs", 10**9, "--epochs"),
    ("--workers", 10**6, "--workers"),
    ("--temperature", "1e308", "--temperature"),
    ("--lambda", "1e308", "--lambda"),
])
def test_absurd_run_settings_are_refused_with_the_limit_named(option, value, named):
    message = one_line_error(invoke("run", option, value, "--print-config"))
    assert named in message and ("at most" in message or "from 0 to" in message)


def test_a_batch_too_large_for_the_machine_is_refused_with_its_memory_estimate(monkeypatch):
    from cqdkit.train import config as config_module

    monkeypatch.setattr(config_module, "machine_memory", lambda: 8 * 2**30)
    with pytest.raises(CqdkitError, match=r"--batch-size 4096 at --image-size 1024: .* 96\.0 GiB, more than 50% "):
        RunConfig(batch_size=4096, image_size=1024).resolved()
    RunConfig(batch_size=128, image_size=224).resolved()  # the paper's: 0.1 GiB


@pytest.mark.parametrize("command", [
    ["degrade", "gray", "x.png", "--out", "o", "--size", "200000"],
    ["table", "--seeds", str(10**30), "--print-config"],
    ["tune", "--seeds", "5000", "--print-config"],
    ["sr-train", "--batch-size", str(2**40)],
])
def test_absurd_command_options_are_usage_errors(command):
    result = invoke(*command)
    assert result.exit_code == 2 and "Traceback" not in result.output and "Invalid value" in result.output


@pytest.mark.parametrize("spec, named", [
    ("tps:sigma=1e308", "sigma"),
    ("tps:sigma=225", "sigma"),
    ("tps:sigma=1_5", "1_5"),
    ("lowres:size=1_6", "1_6"),
])
def test_absurd_or_ambiguous_degradation_parameters_are_refused(tmp_path, spec, named):
    message = one_line_error(invoke("degrade", spec, tmp_path / "absent.png", "--out", tmp_path / "o"))
    assert named in message


def test_a_tps_jitter_within_the_image_is_finite():
    import numpy as np

    from cqdkit.degradations import PairMaker

    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    x, z = PairMaker("tps:sigma=224", size=32)(image, seed=0)
    assert z.shape == (32, 32, 3) and z.dtype == np.uint8


@pytest.mark.parametrize("option, named", [
    ("seed=-1", "seed=-1"), ("seed=4294967296", "seed=4294967296"), ("train_per_class=100000000", "train_per_class"),
    ("image_size=100000", "image_size"),
])
def test_absurd_synthetic_options_are_refused_before_generating(option, named):
    assert named in one_line_error(invoke("run", "--dataset-option", option, "--print-config"))


def test_the_same_spec_twice_is_not_a_second_column():
    with pytest.raises(SpecError, match="'gray' given more than once"):
        split_specs("gray,tps,gray")
    assert split_specs("tps:sigma=1.5,tps:sigma=2") == ["tps:sigma=1.5", "tps:sigma=2"]


# -- the types of settings ---------------------------------------------------------------------------------------


#: Values of the wrong type for an integer setting, as a TOML, YAML or JSON file may hold them.
NOT_AN_INTEGER = st.one_of(
    st.booleans(), st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not float(v).is_integer()),
    st.just(math.inf), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2),
)


@settings(max_examples=40, deadline=None)
@given(value=NOT_AN_INTEGER, key=st.sampled_from(["epochs", "batch-size", "image-size", "seed", "workers"]))
def test_a_config_file_value_of_the_wrong_type_is_named_with_its_file_and_key(tmp_path_factory, value, key):
    path = tmp_path_factory.mktemp("config") / "c.json"
    path.write_text(json.dumps({key: value}))
    result = invoke("run", "--config", path, "--print-config")
    message = one_line_error(result)
    assert "c.json" in message and key in message


@pytest.mark.parametrize("text, named", [
    ("epochs = 1.9", "epochs"), ("epochs = true", "epochs"), ("epochs = inf", "epochs"), ("epochs = 1e400", "epochs"),
    ("lr = {a = 1}", "lr"), ("lr = nan", "lr"), ("amp = 1", "amp"), ("channels_last = 'yes'", "channels_last"),
    ("dataset-option = {classes = {a = 1}}", "dataset-option"), ("momentum = [0.9]", "momentum"),
])
def test_toml_values_of_the_wrong_type_are_one_line(tmp_path, text, named):
    (tmp_path / "c.toml").write_text(text + "\n")
    message = one_line_error(invoke("run", "--config", tmp_path / "c.toml", "--print-config"))
    assert "c.toml" in message and named in message


def test_a_null_in_a_yaml_config_names_its_key(tmp_path):
    (tmp_path / "c.yaml").write_text("degrade: null\n")
    message = one_line_error(invoke("run", "--config", tmp_path / "c.yaml", "--print-config"))
    assert "degrade (--degrade) is null" in message and "leave the key out" in message


def test_a_byte_order_mark_is_read_as_editors_mean_it(tmp_path):
    (tmp_path / "c.toml").write_bytes(b"\xef\xbb\xbfepochs = 3\n")
    result = invoke("run", "--config", tmp_path / "c.toml", "--print-config")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epochs"] == 3


def test_a_fifo_given_as_a_config_file_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "c.toml")  # reading it would wait forever for a writer: a subprocess with a deadline
    done = subprocess.run([sys.executable, "-m", "cqdkit", "run", "--config", str(tmp_path / "c.toml"), "--print-config"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr


def test_print_config_refuses_what_the_run_would_refuse(tmp_path):
    assert "bogus" in one_line_error(invoke("table", "--degrade", "gray,bogus", "--print-config"))
    assert "seed" in one_line_error(invoke("run", "--dataset-option", "seed=-1", "--print-config"))


@pytest.mark.parametrize("field, value", [
    ("epochs", 2.0), ("epochs", True), ("lr", "0.1"), ("lr", math.nan), ("lam", [1.0, math.inf]), ("degrade", None),
    ("dataset_options", {"classes": [3]}), ("amp", "no"), ("image_size", MAX_IMAGE_SIZE + 1),
])
def test_runconfig_checks_every_fields_type_for_python_callers_too(field, value):
    with pytest.raises(CqdkitError, match=RunConfig.option_name(field)):
        RunConfig(**{field: value}).resolved()


def test_check_type_accepts_what_each_type_means():
    assert check_type("lr", 1, float | None, "here") == 1.0
    assert check_type("lam", [1, 2.5], float | list[float] | str | None, "here") == [1.0, 2.5]
    assert check_type("clip", "auto", float | str | None, "here") == "auto"
    with pytest.raises(CqdkitError, match="here: epochs must be an integer"):
        check_type("epochs", False, int, "here")


@pytest.mark.parametrize("reader", ["run config", "tuned values"])
def test_a_fifo_given_where_a_json_file_is_read_is_refused_at_once(tmp_path, reader):
    from cqdkit.train.tune import tuned_values

    fifo = tmp_path / "settings.json"
    os.mkfifo(fifo)
    read = RunConfig.load if reader == "run config" else tuned_values
    with writer_after(fifo, seconds=5), pytest.raises(CqdkitError, match="not a regular file"):
        read(fifo)  # without the check this would wait for a writer: the one that comes after 5 s fails the test


@contextlib.contextmanager
def writer_after(fifo, seconds: float):
    """A writer that connects to ``fifo`` after ``seconds`` (if a reader waits) and writes ``{}``: a reader that
    blocks on the FIFO gets an answer and the test fails instead of hanging."""
    stop = threading.Event()

    def write() -> None:
        stop.wait(seconds)
        while not stop.is_set():
            try:
                descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader waiting
                stop.wait(0.2)
                continue
            os.write(descriptor, b"{}")
            os.close(descriptor)
            return

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@given(weight=st.floats(0, 1e6), temperature=st.floats(1e-3, 1000))
def test_a_loss_spec_written_out_parses_back_to_the_same_numbers(weight, temperature):
    from cqdkit.losses.spec import loss_text, parse_loss

    terms = parse_loss(f"softce:temperature={temperature!r},lambda={weight!r}")
    again = parse_loss(loss_text(terms))  # a '+' in 1e+06 would split the spec
    assert [(t.name, t.temperature, t.weight) for t in again] == [("softce", temperature, weight)]


@pytest.mark.parametrize("grid, named", [("--temperatures", "--temperatures"), ("--lambdas", "--lambdas")])
def test_tune_grids_beyond_the_limits_are_refused(tmp_path, grid, named):
    assert named in one_line_error(invoke("tune", grid, "1,1e308", "--out", tmp_path / "tune"))
    assert not (tmp_path / "tune").exists()


def test_a_number_where_a_config_file_names_something_is_refused_with_its_key(tmp_path):
    (tmp_path / "c.toml").write_text("teacher = 5\nlambda = 5\n")  # lambda takes a number; teacher a name
    message = one_line_error(invoke("run", "--config", tmp_path / "c.toml", "--print-config"))
    assert "teacher must be a string" in message and "got 5" in message


def test_a_misspelt_degradation_names_the_option_it_came_from():
    message = one_line_error(invoke("run", "--degrade", "tsp", "--print-config"))
    assert "--degrade 'tsp'" in message and "did you mean 'tps'" in message


def test_a_config_files_bad_value_names_the_key_its_part_and_the_option(tmp_path):
    (tmp_path / "c.toml").write_text("lambda = nan\n")
    assert "lambda (--lambda) must be" in one_line_error(invoke("run", "--config", tmp_path / "c.toml", "--print-config"))
    (tmp_path / "c.toml").write_text("dataset-option = {classes = [1, 2]}\n")
    message = one_line_error(invoke("run", "--config", tmp_path / "c.toml", "--print-config"))
    assert "dataset-option.classes (--dataset-option) must be" in message
