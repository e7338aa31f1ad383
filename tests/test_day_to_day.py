"""Day-to-day use: experiments as config files, output without a terminal, JSON events, TensorBoard."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cqdkit.cli import cli

from .test_run_cli import TINY


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def printed_config(*args: str) -> dict:
    result = invoke("run", *args, "--print-config")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# -- 1. experiments as files ----------------------------------------------------------------------------------

FILES = {
    "toml": 'degrade = "lowres"\nepochs = 3\nlambda = 50\nlr-end = 0.001\ncache_teacher = false\n'
            '[dataset-option]\nclasses = "3"\n',
    "yaml": "degrade: lowres\nepochs: 3\nlambda: 50\nlr_end: 0.001\ncache_teacher: false\n"
            "dataset_options:\n  classes: '3'\n",
    "json": json.dumps({"degrade": "lowres", "epochs": 3, "lam": 50, "--lr-end": 0.001, "cache_teacher": False,
                        "dataset-option": {"classes": "3"}}),
}


@pytest.mark.parametrize("suffix", FILES)
def test_a_config_file_sets_options_and_the_command_line_wins(tmp_path, suffix):
    path = tmp_path / f"experiment.{suffix}"
    path.write_text(FILES[suffix])
    settings = printed_config("--config", str(path))
    assert (settings["degrade"], settings["epochs"], settings["lam"], settings["lr_end"]) == ("lowres", 3, 50, 0.001)
    assert settings["cache_teacher"] is False and settings["dataset_options"] == {"classes": "3"}
    assert printed_config("--config", str(path), "--epochs", "7", "--lambda", "2")["epochs"] == 7
    assert printed_config("--config", str(path), "--lambda", "2")["lam"] == 2


def test_print_config_runs_nothing_and_reads_back(tmp_path):
    out = tmp_path / "run"
    first = invoke("run", "--degrade", "tps", "--epochs", "5", "--out", str(out), "--print-config")
    assert first.exit_code == 0 and not out.exists()
    saved = tmp_path / "printed.json"
    saved.write_text(first.output)
    assert printed_config("--config", str(saved)) == json.loads(first.output)


def test_unknown_keys_are_errors_naming_the_key_and_close_matches(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("lamda = 3\n")
    result = CliRunner().invoke(cli, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'lamda'" in result.output and "'lambda'" in result.output


@pytest.mark.parametrize("name, text, named", [
    ("c.yaml", "epochs: [1, 2\n", "is not valid YAML: expected ',' or ']'"),
    ("c.toml", 'fold = "x"\n', "fold must be an integer, got 'x'"),
    ("c.toml", 'cache_teacher = "no"\n', "cache_teacher must be true or false, got 'no'"),
    ("c.json", '{"channels_last": 1}', "channels_last must be true or false, got 1"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_setting(tmp_path, name, text, named):
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(cli, ["run", "--config", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert f"config file {path}" in result.output and named in result.output
    assert not (tmp_path / "out").exists()


def test_a_runs_own_config_json_reproduces_it(tmp_path):
    first = tmp_path / "first"
    assert invoke("run", "--degrade", "gray", "--method", "cqd", *TINY, "--out", str(first)).exit_code == 0
    second = tmp_path / "second"
    again = invoke("run", "--config", str(first / "config.json"), "--out", str(second), "--quiet")
    assert again.exit_code == 0, again.output
    results = [json.loads((run / "results.json").read_text())["models"] for run in (first, second)]
    for model in results[0]:
        assert (results[0][model]["test_x"], results[0][model]["test_z"]) == \
            (results[1][model]["test_x"], results[1][model]["test_z"])


def test_config_json_records_every_plugin_that_took_part(tmp_path, plugin_package):
    plugin_package("cqdkit-sepia", {"sepia": "cqdkit_sepia"})
    out = tmp_path / "run"
    assert invoke("run", "--degrade", "gray+sepia", "--method", "b", *TINY, "--loss", "softce+rkd",
                  "--out", str(out)).exit_code == 0
    plugins = {(row["kind"], row["name"]): row for row in json.loads((out / "config.json").read_text())["plugins"]}
    assert plugins[("degradation", "sepia")]["distribution"] == "cqdkit-sepia"
    assert plugins[("degradation", "sepia")]["version"] == "0.1.0"
    assert plugins[("degradation", "gray")]["builtin"] and plugins[("loss", "softce")]["builtin"]
    assert plugins[("loss", "rkd")]["builtin"]  # every term of a loss of several terms
    assert {("dataset", "synthetic"), ("backbone", "convnet-s")} <= set(plugins)


# -- 2. output without a terminal -----------------------------------------------------------------------------


def test_without_a_terminal_each_epoch_is_one_plain_line_and_the_folder_is_named(tmp_path):
    out = tmp_path / "run"
    args = [a for a in TINY if a != "--quiet"]
    result = invoke("run", "--degrade", "gray", "--method", "b", *args, "--out", str(out))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for model in ("A", "B"):
        epochs = [line for line in lines if line.startswith(f"{model} epoch ")]
        assert [line.split()[2] for line in epochs] == ["1/2:", "2/2:"]
        assert all("loss" in line and "images/s" in line and "validation accuracy" in line for line in epochs)
    assert lines[0] == f"run folder: {out}"
    assert str(out) in " ".join(result.output.split()[-12:])  # and again at the end


def test_json_log_format_is_one_event_per_line(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--degrade", "gray", "--method", "b", *TINY, "--log-format", "json",
                                      "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["model"], e["epoch"]) for e in epochs] == [("A", 1), ("A", 2), ("B", 1), ("B", 2)]
    [run] = [e for e in events if e["event"] == "run"]
    results = json.loads((out / "results.json").read_text())
    assert run["models"]["b"]["test_z"] == results["models"]["b"]["test_z"]
    assert {e["model"] for e in events if e["event"] == "result"} == {"A", "B"}


# -- 3. TensorBoard ---------------------------------------------------------------------------------------------


def test_tensorboard_gets_every_models_curves_and_test_scores(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = invoke("run", "--degrade", "gray", "--method", "cqd", *TINY, "--tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())["models"]
    for model, method in (("A", "a"), ("CQD", "cqd"), ("B", "b")):
        events = EventAccumulator(str(out / "tensorboard" / model))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert {"train/loss", "train/ce", "train/train_acc", "train/lr", "val/acc", "test/test_z"} <= set(tags)
        log = [json.loads(line) for line in (out / method / "log.jsonl").read_text().splitlines()]
        assert [s.value for s in events.Scalars("train/loss")] == pytest.approx([row["loss"] for row in log])
        assert events.Scalars("test/test_z")[0].value == pytest.approx(results[method]["test_z"])
    events = EventAccumulator(str(out / "tensorboard" / "CQD"))
    events.Reload()
    assert "train/distill" in events.Tags()["scalars"]
