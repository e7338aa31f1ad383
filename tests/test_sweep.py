"""Sweeps (cqdkit.sweep): the same scores under every executor, nothing trained twice, nothing lost."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cqdkit.errors import CqdkitError
from cqdkit.reporting import Reporter
from cqdkit.sweep import SweepSettings, Training, run_sweep
from cqdkit.train.config import RunConfig
from cqdkit.train.tune import run_tune

TINY = dict(
    dataset_options={"classes": 3, "train_per_class": 8, "test_per_class": 4, "image_size": 48},
    image_size=32, batch_size=8, epochs=2, teacher="convnet-s", student="convnet-s", degrade="lowres", device="cpu",
)
GRID = dict(methods=("cqd",), seeds=(0, 1), temperatures=(10.0,), lambdas=(0.0, 5.0, 20.0))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def grid_scores(result: dict) -> dict:
    """Every cell's per-replicate validation scores, as the tune's JSON holds them (floats compared exactly)."""
    return {f"{degradation}/{cell['temperature']}/{cell['lam']}": cell["scores"]
            for degradation, found in result["methods"]["cqd"].items() for cell in found["grid"]}


class Lines:
    """A reporter's messages, kept."""

    def __init__(self):
        self.lines = []
        self.reporter = Reporter(None)
        self.reporter.message = self.lines.append


@pytest.fixture(scope="module")
def jobs_1(tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs-1")
    os.environ["CQDKIT_CACHE"] = str(tmp_path_factory.getbasetemp() / "cqdkit-cache")
    return run_tune(RunConfig(**TINY), ["lowres"], out, **GRID)


def test_two_worker_processes_give_the_scores_of_one_bit_for_bit(jobs_1, tmp_path):
    two = run_tune(RunConfig(**TINY), ["lowres"], tmp_path, **GRID, sweep=SweepSettings(jobs=2))
    assert grid_scores(two) == grid_scores(jobs_1)
    assert len(list((tmp_path / "trainings").glob("*.json"))) == 8  # 2 replicates x (A, B, 2 cells)
    assert (tmp_path / "trainings" / "logs" / "lowres_seed-0_A.log").read_text().count("epoch 2/2") == 1


def test_a_local_ray_gives_the_scores_of_one_process(jobs_1, tmp_path):
    ray = pytest.importorskip("ray")
    lines = Lines()
    result = run_tune(RunConfig(**TINY), ["lowres"], tmp_path, **GRID, sweep=SweepSettings(engine="ray"),
                      reporter=lines.reporter)
    assert grid_scores(result) == grid_scores(jobs_1)
    assert any(line.startswith("Ray: up to") for line in lines.lines)
    assert not ray.is_initialized()  # the sweep stopped the Ray it started


def test_a_sweep_killed_half_way_finishes_with_the_same_table_and_retrains_nothing_finished(jobs_1, tmp_path):
    script = (
        "import sys; from pathlib import Path; from cqdkit.train.config import RunConfig; "
        "from cqdkit.train.tune import run_tune; from cqdkit.sweep import SweepSettings; "
        f"run_tune(RunConfig(**{TINY!r}), ['lowres'], Path(sys.argv[1]), **{GRID!r}, sweep=SweepSettings(jobs=2))"
    )
    driver = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "trainings"
    deadline = time.monotonic() + 240
    while len(list(records.glob("*.json"))) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.5)  # its workers notice and end (they poll their parent every 0.5 s)
    finished = {path: path.read_bytes() for path in records.glob("*.json")}
    models = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("model.safetensors")}
    assert 3 <= len(finished) < 8
    lines = Lines()
    result = run_tune(RunConfig(**TINY), ["lowres"], tmp_path, **GRID, sweep=SweepSettings(jobs=2),
                      reporter=lines.reporter)
    assert grid_scores(result) == grid_scores(jobs_1)
    assert f"{len(finished)} of 8 trainings already done" in lines.lines[0]
    assert all(path.read_bytes() == content for path, content in finished.items())  # not trained again
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in models.items())
    assert len(list(records.glob("*.json"))) == 8


def counted(name, marker, value=1.0, after=(), after_file=None):
    arguments = {"marker": str(marker), "value": value}
    if after_file is not None:
        arguments["after_file"] = str(after_file)
    return Training(name, "tests.sweep_tasks:counted", arguments, after=after)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_training_starts_only_after_those_it_waits_for_and_runs_once(tmp_path, jobs):
    teacher = counted("A", tmp_path / "a")
    students = [counted(f"S{k}", tmp_path / f"s{k}", value=k, after=("A",), after_file=tmp_path / "a.done")
                for k in range(3)]
    scores = run_sweep([teacher, *students], tmp_path, SweepSettings(jobs=jobs))
    assert scores == {"A": {"val_z": 1.0}, **{f"S{k}": {"val_z": float(k)} for k in range(3)}}
    again = run_sweep([teacher, *students], tmp_path, SweepSettings(jobs=jobs))
    assert again == scores
    assert all((tmp_path / name).read_text().count("\n") == 1 for name in ("a", "s0", "s1", "s2"))


def test_a_changed_argument_is_a_new_training_and_a_damaged_record_is_trained_again(tmp_path):
    run_sweep([counted("A", tmp_path / "a", value=1.0)], tmp_path)
    assert run_sweep([counted("A", tmp_path / "a", value=2.0)], tmp_path) == {"A": {"val_z": 2.0}}
    for record in (tmp_path / "trainings").glob("*.json"):
        record.write_text("{not json")
    assert run_sweep([counted("A", tmp_path / "a", value=2.0)], tmp_path) == {"A": {"val_z": 2.0}}
    assert (tmp_path / "a").read_text().split() == ["1.0", "2.0", "2.0"]


def test_a_worker_that_dies_is_retried_once(tmp_path):
    lines = Lines()
    task = Training("tps/seed-0/B", "tests.sweep_tasks:dies_once", {"marker": str(tmp_path / "marker")})
    assert run_sweep([task], tmp_path, SweepSettings(jobs=2), reporter=lines.reporter) == {"tps/seed-0/B": {"val_z": 0.5}}
    assert any("tps/seed-0/B: its process ended with exit code 9; trying it once more" in line for line in lines.lines)


def test_a_worker_that_dies_twice_stops_the_sweep_naming_the_training_and_its_log(tmp_path):
    task = Training("tps/seed-0/B", "tests.sweep_tasks:always_dies", {"marker": str(tmp_path / "marker")})
    with pytest.raises(CqdkitError) as error:
        run_sweep([task], tmp_path, SweepSettings(jobs=2))
    log = tmp_path / "trainings" / "logs" / "tps_seed-0_B.log"
    assert str(error.value) == f"training tps/seed-0/B failed twice: its process ended with exit code 9; its log: {log}"
    assert (tmp_path / "marker").read_text() == "xx"


def test_a_training_that_raises_stops_the_sweep_at_once_with_its_error(tmp_path):
    task = Training("tps/seed-0/B", "tests.sweep_tasks:raises", {"marker": str(tmp_path / "marker")})
    with pytest.raises(CqdkitError, match=r"^training tps/seed-0/B failed: bad setting: --lambda -1; its log: .*"
                                          r"tps_seed-0_B\.log$"):
        run_sweep([task], tmp_path, SweepSettings(jobs=2))
    assert (tmp_path / "marker").read_text() == "x"  # not retried: it would fail the same way
    assert "CqdkitError: bad setting" in (tmp_path / "trainings" / "logs" / "tps_seed-0_B.log").read_text()


def test_a_training_listed_before_what_it_waits_for_is_refused(tmp_path):
    with pytest.raises(CqdkitError, match="S waits for A, which is not before it"):
        run_sweep([counted("S", tmp_path / "s", after=("A",)), counted("A", tmp_path / "a")], tmp_path)


def test_sweep_settings_are_checked(tmp_path):
    for settings, message in ((SweepSettings(jobs=0), "--jobs must be at least 1"),
                              (SweepSettings(engine="slurm"), "--engine 'slurm'"),
                              (SweepSettings(threads=0), "--threads must be at least 1")):
        with pytest.raises(CqdkitError, match=message):
            run_sweep([], tmp_path, settings)


def test_prune_stops_the_worst_cells_by_rung_and_the_cells_that_finish_are_the_full_grids(tmp_path):
    grid = dict(methods=("cqd",), seeds=(0, 1), temperatures=(2.0, 10.0), lambdas=(0.0, 5.0, 20.0, 50.0))
    config = RunConfig(**{**TINY, "epochs": 3})  # rungs after 1 and 3 epochs
    full = run_tune(config, ["lowres"], tmp_path / "full", **grid)
    pruned = run_tune(config, ["lowres"], tmp_path / "pruned", **grid, prune=True)
    rung = pruned["rungs"]
    assert {row["epochs"] for row in rung} == {1} and len(rung) == 6
    kept = [row for row in rung if row["continued"]]
    stopped = [row for row in rung if not row["continued"]]
    assert len(kept) == 2  # the best third of 6, rounded up
    assert max(row["score"] for row in kept) <= min(row["score"] for row in stopped)
    finished = {(c["temperature"], c["lam"]): c["scores"] for c in pruned["methods"]["cqd"]["lowres"]["grid"]}
    every = {(c["temperature"], c["lam"]): c["scores"] for c in full["methods"]["cqd"]["lowres"]["grid"]}
    assert set(finished) == {(0.0, 0.0)} | {(row["temperature"], row["lam"]) for row in kept}
    assert all(finished[key] == every[key] for key in finished)  # continued from a checkpoint, bit for bit


def test_sweeps_need_no_ray_unless_asked(tmp_path):
    code = ("import sys; from cqdkit.sweep import run_sweep, SweepSettings; from cqdkit.train.tune import run_tune; "
            "import cqdkit.cli; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
