"""Reliability sweep (issue #14): how cqdkit handles bad inputs and faults, one subprocess per case.

    python benchmarks/reliability_sweep.py [--quick] [--json OUT] [--only SUBSTRING] [--keep]

Every case builds its own small inputs in a temporary folder (tiny CUB, Stanford Cars and image-folder
datasets in their real on-disk formats, written with ``tests/data_fixtures.py``; corrupt, truncated,
exotic-mode and non-UTF-8-named images; malformed annotation files, checkpoints, caches and config
files; plugins that raise; read-only, full or shared output folders; processes killed at random moments),
runs ``python -m cqdkit ...`` of this checkout on it, and classifies what happened:

* **clean**: exit status 2 with a single ``error:`` line naming what is wrong (click's own usage errors,
  ``Error: Invalid value for '--x'``, count as one line), or exit 0 when the input is legitimate and the
  result is right;
* **traceback**: exit status 1 (or killed by a signal), a "Traceback" anywhere in the output, or more than
  one ``error:`` line;
* **silent**: exit 0 where the input should have been refused, or a wrong result reported as right (NaN
  accuracies, a skipped image that is not listed, weights that differ after a resume);
* **data lost**: a file that existed before the command (a user's file, an earlier result) was destroyed
  or changed;
* and, less severe, **late** (a clean error, but only after models had trained: every setting is promised
  to be checked first), **vague** (one line, but it does not name the culprit, or names the wrong one),
  **hang** (no answer within the case's time limit), **refused** (a legitimate input refused).

The table printed at the end counts them per area; every case that is not clean is listed with its
command (temporary paths shown as ``$T``). ``--json OUT`` writes every case with its outcome.
``--quick`` skips most cases that train (about 4 minutes instead of 20 on two CPU cores).
Everything is removed at the end (``--keep`` keeps the temporary folder for a look).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
from PIL import Image  # noqa: E402

from cqdkit.files import TEMPORARY_SUFFIX  # noqa: E402
from tests.data_fixtures import cars_rows, struct_array, write_cub, write_folder, write_image  # noqa: E402

CATEGORIES = ("clean", "traceback", "silent", "data lost", "late", "vague", "hang", "refused")
ERROR_LINE = re.compile(r"^\s*(error|Error):")

#: The tiny training settings every case that trains uses (synthetic data, 1 epoch, 32-pixel views).
TINY = ("--dataset-option classes=3 --dataset-option train_per_class=8 --dataset-option test_per_class=4 "
        "--dataset-option image_size=48 --image-size 32 --batch-size 8 --epochs 1 --teacher convnet-s "
        "--student convnet-s --quiet --no-amp")
#: The same for the datasets on disk (CUB, Cars, folders), which default to ImageNet weights.
DISK = "--no-pretrained --image-size 32 --batch-size 8 --epochs 1 --teacher convnet-s --student convnet-s --quiet --no-amp"
#: The finished run that resume, export, report and kill cases start from (and compare against).
BASE_RUN = f"run --degrade tps {TINY.replace('--epochs 1', '--epochs 2')} --no-report"


# -- running cqdkit -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What one command did."""

    command: str
    rc: int | None
    out: str = ""
    err: str = ""
    seconds: float = 0.0
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    def error_lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if ERROR_LINE.match(line)]

    def lines_after_error(self) -> list[str]:
        """The non-blank lines that follow the (first) error line in its stream: a message on several lines."""
        for stream in (self.err, self.out):
            lines = stream.splitlines()
            for index, line in enumerate(lines):
                if ERROR_LINE.match(line):
                    return [rest for rest in lines[index + 1:] if rest.strip()]
        return []

    def tail(self, lines: int = 3) -> str:
        kept = [line for line in self.text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])


class Context:
    """A case's folder, the shared fixtures and a way to run cqdkit there."""

    def __init__(self, sweep: Sweep, folder: Path) -> None:
        self.sweep, self.d = sweep, folder
        self.env: dict[str, str] = {}
        self.cleanups: list[Callable[[], None]] = []

    @property
    def shared(self) -> dict[str, Path]:
        return self.sweep.shared

    def format(self, text: str) -> str:
        return text.format(d=self.d, tiny=TINY, disk=DISK, tiny_sr=TINY_SR, base=self.shared.get("base", ""), **{
            k: v for k, v in self.shared.items() if k != "base"})

    def argv(self, command: str | list[Any]) -> list[Any]:
        return shlex.split(self.format(command)) if isinstance(command, str) else list(command)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), CQDKIT_CACHE=str(self.sweep.cache), PYTHONDONTWRITEBYTECODE="1",
                   COLUMNS="200")
        env.pop("CQDKIT_TRACEBACK", None)
        env.update(self.env)
        env.update(extra or {})
        return env

    def popen(self, command: str | list[Any], env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cqdkit", *self.argv(command)], cwd=self.d,
                                env=self.environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def cqdkit(self, command: str | list[Any], *, timeout: float = 600, env: dict[str, str] | None = None,
               memory_gb: float | None = None) -> Outcome:
        """Run ``python -m cqdkit COMMAND`` in the case folder and wait for it."""
        argv = self.argv(command)
        shown = self.sweep.show(argv)
        limit = None
        if memory_gb:
            size = int(memory_gb * 2**30)
            limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (size, size))  # noqa: E731
        began = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "cqdkit", *argv], cwd=self.d, env=self.environment(env),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   preexec_fn=limit)
        try:
            out, err = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            timed_out = True
        return Outcome(shown, process.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                       time.perf_counter() - began, timed_out)


# -- what a case is -------------------------------------------------------------------------------------------

Check = Callable[[Context, Outcome], "tuple[str, str] | None"]


@dataclasses.dataclass
class Case:
    """One input or fault, the command that meets it and what should happen.

    ``command`` is a cqdkit command line (``{d}`` is the case folder, ``{tiny}``/``{disk}`` the tiny training
    options, ``{base}`` etc. the shared fixtures) or, for faults that need more than one process, a function
    of the context returning the outcome to classify. ``names``: what the error line must mention.
    ``guard``: files that must come out of the command unchanged. ``check``: a further look at the result
    (run folders, weights, listed problems) that may reclassify the case.
    """

    area: str
    what: str
    command: str | Callable[[Context], Outcome]
    expect: str  # "error", "ok", or "either" (a clean refusal or a right result)
    expected: str = ""
    names: tuple[str, ...] = ()
    setup: Callable[[Context], None] | None = None
    guard: Callable[[Context], Iterable[Path]] | None = None
    check: Check | None = None
    trains: bool = False  # takes a training run (skipped by --quick unless quick=True)
    quick: bool = False
    lazy: bool = False  # the fault can only show during training (a bad image decoded lazily, a loss that blows up)
    timeout: float = 600
    memory_gb: float | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.expected:
            self.expected = {"error": "exit 2, one error line" + (f" naming {', '.join(self.names)}" if self.names else ""),
                             "ok": "exit 0, right result",
                             "either": "a one-line refusal, or exit 0 with nothing of the user's touched"}[self.expect]


@dataclasses.dataclass
class Verdict:
    case: Case
    category: str
    note: str
    outcome: Outcome


def snapshot(paths: Iterable[Path]) -> dict[Path, str | None]:
    """SHA-256 of every file under ``paths`` (None for a path that does not exist)."""
    found: dict[Path, str | None] = {}
    for path in paths:
        files = [p for p in path.rglob("*") if p.is_file() and p.name != ".cqdkit.lock"] if path.is_dir() else [path]
        for file in files:
            found[file] = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    return found


def checkpoints(folder: Path) -> set[Path]:
    return set(folder.rglob("latest.json")) if folder.is_dir() else set()


def out_folder(argv: list[Any], cwd: Path) -> Path | None:
    """The --out of a run, table, tune or multires command line (None for other commands)."""
    if not argv or argv[0] not in ("run", "table", "tune", "multires"):
        return None
    for flag, value in zip(argv, argv[1:]):
        if flag == "--out":
            return cwd / str(value)
    return None


def classify(case: Case, outcome: Outcome) -> tuple[str, str]:
    """clean / traceback / silent / hang / refused / vague from the exit status and the output alone."""
    if outcome.timed_out:
        return "hang", f"no answer in {case.timeout:.0f} s; killed"
    errors = outcome.error_lines()
    if "Traceback" in outcome.text or outcome.rc not in (0, 2):
        return "traceback", f"exit {outcome.rc}: {outcome.tail(2)}"
    if case.expect == "either" and outcome.rc == 2 and len(errors) == 1:
        return "clean", errors[0]
    if case.expect in ("ok", "either"):
        if outcome.rc == 2:
            return "refused", errors[0] if errors else outcome.tail()
        return "clean", "exit 0"
    if outcome.rc == 0:
        return "silent", f"exit 0, accepted: {outcome.tail(2)}"
    if len(errors) != 1:
        return "traceback", f"{len(errors)} error lines: {outcome.tail(3)}"
    more = outcome.lines_after_error()
    if more:
        return "traceback", f"the error goes on for {len(more) + 1} lines: {errors[0][:200]} | {' | '.join(more[:3])}"
    missing = [name for name in case.names if name.lower() not in errors[0].lower()]
    if missing:
        return "vague", f"does not name {missing}: {errors[0]}"
    return "clean", errors[0]


# -- the sweep ------------------------------------------------------------------------------------------------


class Sweep:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work, self.quick = work, quick
        self.cache = work / "cache"
        self.shared: dict[str, Path] = {}
        self.verdicts: list[Verdict] = []

    def show(self, argv: list[Any]) -> str:
        words = [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv]
        shown = "cqdkit " + shlex.join(words).replace(str(self.work), "$T")
        return shown.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def prepare(self) -> None:
        """The fixtures several cases share: a finished two-epoch run (the reference for resumes and the
        source of exports and reports) and the plugin packages."""
        folder = self.work / "shared"
        folder.mkdir(parents=True)
        context = Context(self, folder)
        base = folder / "base"
        outcome = context.cqdkit(f"{BASE_RUN} --out {base}")
        if outcome.rc != 0:
            raise SystemExit(f"the base run failed; the sweep needs it:\n{outcome.text}")
        self.shared["base"] = base
        self.shared["base_seconds"] = Path(f"{outcome.seconds:.1f}")
        write_plugins(folder / "plugins")
        for name in PLUGIN_PACKAGES:
            self.shared[f"site_{name}"] = folder / "plugins" / name

    def run_case(self, index: int, case: Case) -> Verdict:
        folder = self.work / "cases" / f"{index:03d}"
        folder.mkdir(parents=True)
        context = Context(self, folder)
        context.env.update(case.env)
        try:
            if case.setup:
                case.setup(context)
            guarded = snapshot(case.guard(context)) if case.guard else {}
            if callable(case.command):
                argv, out = [], None
                outcome = case.command(context)
            else:
                argv = context.argv(case.command)
                out = out_folder(argv, folder)
                before = checkpoints(out) if out else set()
                outcome = context.cqdkit(case.command, timeout=case.timeout, memory_gb=case.memory_gb)
            category, note = classify(case, outcome)
            if category == "clean" and case.expect == "error" and out and not case.lazy and checkpoints(out) - before:
                category, note = "late", f"refused only after training: {note}"
            if case.check and category in ("clean", "vague", "late"):
                found = case.check(context, outcome)
                if found:
                    category, note = found
            changed = [p for p, digest in guarded.items() if (snapshot([p]).get(p) if p.exists() else None) != digest]
            if changed:
                category = "data lost"
                note = f"changed or removed: {', '.join(self.show([p])[7:] for p in changed[:4])}; {note}"
        except Exception as error:  # a bug of the sweep itself: say so, never count it as cqdkit's
            outcome = Outcome("(setup)", None, err=repr(error))
            category, note = "sweep error", f"{type(error).__name__}: {error}"
        finally:
            for cleanup in reversed(context.cleanups):
                cleanup()
        return Verdict(case, category, note, outcome)

    def run(self, cases: list[Case]) -> None:
        for index, case in enumerate(cases, 1):
            verdict = self.run_case(index, case)
            self.verdicts.append(verdict)
            mark = "ok " if verdict.category == "clean" else "!! "
            print(f"{mark}[{index:3d}/{len(cases)}] {case.area:11s} {verdict.category:10s} "
                  f"{verdict.outcome.seconds:5.1f}s  {case.what}", flush=True)
            if verdict.category != "clean":
                print(f"      {verdict.outcome.command}\n      -> {verdict.note[:400]}", flush=True)


# -- building inputs ------------------------------------------------------------------------------------------


def rewrite_line(path: Path, number: int, text: str | bytes) -> None:
    """Replace line ``number`` (1-based) of a text file."""
    lines = path.read_bytes().splitlines()
    lines[number - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines) + b"\n")


def append_line(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text + "\n")


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def garbage(path: Path, size: int = 300, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_image_named(path: Path, seed: int = 0) -> Path:
    """``write_image`` for any file name: OpenCV crashes on names that are not UTF-8, so write under an ASCII
    name and rename."""
    with tempfile.TemporaryDirectory() as plain:
        write_image(Path(plain) / "image.png", seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(plain) / "image.png", path)
    return path


def image_array(seed: int = 0, width: int = 40, height: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_mode(path: Path, mode: str, seed: int = 0) -> Path:
    """An image in one of Pillow's modes (the file name's suffix is kept; Pillow reads by content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(image_array(seed))
    gray = np.asarray(rgb.convert("L"))
    if mode == "CMYK":
        rgb.convert("CMYK").save(path, format="JPEG", quality=95)
    elif mode == "I;16":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path, format="PNG")
    elif mode == "F":
        Image.fromarray(gray.astype(np.float32) / 255, "F").save(path, format="TIFF")
    elif mode == "P+transparency":
        rgb.convert("P").save(path, format="PNG", transparency=0)
    elif mode == "GIF-animated":
        frames = [rgb.convert("P"), Image.fromarray(image_array(seed + 1)).convert("P")]
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])
    elif mode == "RGBA":
        rgba = rgb.copy()
        rgba.putalpha(Image.fromarray((gray > 100).astype(np.uint8) * 255))
        rgba.save(path, format="PNG")
    else:  # L, LA, 1, RGB
        rgb.convert(mode).save(path, format="PNG")
    return path


def cub(c: Context, name: str = "cub", **kwargs: Any) -> Path:
    """A tiny CUB_200_2011 folder (3 classes, 40x30 PNGs, box (2, 3, 20, 15)) under the case folder."""
    if (c.d / name / "CUB_200_2011").is_dir():
        return c.d / name / "CUB_200_2011"
    options = {"classes": 3, "train": 4, "test": 2} | kwargs
    return write_cub(c.d / name, **options)


def cub_image(c: Context, class_id: int = 1, k: int = 0) -> Path:
    return c.d / "cub" / "CUB_200_2011" / "images" / f"{class_id:03d}.Class_{class_id}" / f"img_{k}.png"


def cars(c: Context, form: str = "devkit", edit: Callable[[list[dict[str, Any]]], None] | None = None,
         meta: dict[str, Any] | None = None, train: int = 4, test: int = 2, classes: int = 2) -> Path:
    """A Stanford Cars folder: devkit form (cars_meta.mat, annotation .mat files, cars_train/, cars_test/)
    or combined form (cars_annos.mat, car_ims/); ``edit`` changes the first annotation list before saving."""
    root = c.d / "cars"
    names = np.array([f"Car Model {k}" for k in range(1, classes + 1)], dtype=object)
    if form == "combined":
        rows = [{"relative_im_path": f"car_ims/{i + 1:06d}.jpg", "bbox_x1": np.uint8(1), "bbox_y1": np.uint8(1),
                 "bbox_x2": np.uint8(40), "bbox_y2": np.uint8(30), "class": np.uint8(i % classes + 1),
                 "test": np.uint8(i % 3 == 0)} for i in range(train + test)]
        for row in rows:
            write_image(root / row["relative_im_path"], seed=int(row["class"]))
        if edit:
            edit(rows)
        scipy.io.savemat(root / "cars_annos.mat", {"annotations": struct_array(rows), "class_names": names})
        return root
    (root / "devkit").mkdir(parents=True)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", meta if meta is not None else {"class_names": names})
    for split, count, file in (("cars_train", train, root / "devkit" / "cars_train_annos.mat"),
                               ("cars_test", test, root / "cars_test_annos_withlabels.mat")):
        rows = cars_rows(split, count, classes=classes)
        for i, row in enumerate(rows):
            write_image(root / split / row["fname"], seed=i)
        if edit and split == "cars_train":
            edit(rows)
        scipy.io.savemat(file, {"annotations": struct_array(rows)})
    return root


def folder(c: Context, **kwargs: Any) -> Path:
    if (c.d / "folder").is_dir():
        return c.d / "folder"
    options = {"classes": ("cat", "dog", "owl"), "train": 4, "test": 2} | kwargs
    return write_folder(c.d / "folder", **options)


def copy_base(c: Context, name: str = "run") -> Path:
    target = c.d / name
    if not target.is_dir():
        shutil.copytree(c.shared["base"], target)
    return target


def interrupted_base(c: Context) -> Path:
    """The base run as a kill after the student's first epoch leaves it: A finished, the student's epoch-1
    checkpoint named by latest.json, no B, no results."""
    run = copy_base(c)
    student = run / "a-cqd"
    for name in ("model.safetensors", "model.json", "epoch-0002.safetensors", "epoch-0002.json"):
        (student / name).unlink()
    (student / "latest.json").write_text(json.dumps({"checkpoint": "epoch-0001.json", "epoch": 1}))
    log = (student / "log.jsonl").read_text().splitlines()
    (student / "log.jsonl").write_text(log[0] + "\n")
    shutil.rmtree(run / "b")
    (run / "results.json").unlink()
    return run


def immutable(c: Context, path: Path) -> Path:
    """A folder nobody (root included) can create files in: ``chattr +i``, undone at the end of the case."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        raise RuntimeError("chattr +i is not available here")
    c.cleanups.append(lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True))
    return path


def small_disk(c: Context, path: Path, size: str = "600k") -> Path:
    """A tmpfs of ``size`` bytes mounted at ``path`` (unmounted at the end of the case)."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        raise RuntimeError("cannot mount a tmpfs here (needs root)")
    c.cleanups.append(lambda: subprocess.run(["umount", "-l", str(path)], capture_output=True))
    return path


def text_file(relative: str, content: str | bytes) -> Callable[[Context], None]:
    """A setup that writes one file in the case folder."""

    def setup(c: Context) -> None:
        path = c.d / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else textwrap.dedent(content).lstrip().encode())

    return setup


def steps(*setups: Callable[[Context], Any]) -> Callable[[Context], None]:
    def setup(c: Context) -> None:
        for step in setups:
            step(c)

    return setup


# -- checks of a result ---------------------------------------------------------------------------------------


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def finite_results(relative: str = "out") -> Check:
    """Exit 0 must come with results.json whose every accuracy is a finite number in [0, 1]."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        path = c.d / relative / "results.json"
        if not path.is_file():
            return "silent", f"exit 0 but no {relative}/results.json"
        for model, scores in load_json(path)["models"].items():
            for key in ("test_x", "test_z"):
                value = scores.get(key)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                    return "silent", f"results.json reports {model} {key} = {value} as a result"
        return None

    return check


def skipped_listed(relative: str, *names: str, count: int | None = None) -> Check:
    """A --skip-bad run must list every skipped sample in config.json (dataset.skipped)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        found = finite_results(relative)(c, outcome)
        if found:
            return found
        skipped = load_json(c.d / relative / "config.json")["dataset"]["skipped"]
        missing = [n for n in names if not any(n in s for s in skipped)]
        if missing or (count is not None and len(skipped) != count):
            return "silent", f"config.json dataset.skipped = {skipped}; expected {names}"
        return None

    return check


def same_weights(relative: str = "out") -> Check:
    """The run in ``relative`` must end with the base run's weights, bit for bit, and its accuracies."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        import torch
        from safetensors.torch import load_file

        run, base = c.d / relative, c.shared["base"]
        for model in ("a", "a-cqd", "b"):
            mine, reference = run / model / "model.safetensors", base / model / "model.safetensors"
            if not mine.is_file():
                return "silent", f"exit {outcome.rc} but no {relative}/{model}/model.safetensors"
            a, b = load_file(str(mine)), load_file(str(reference))
            different = [k for k in b if k not in a or not torch.equal(a[k], b[k])]
            if different:
                return "silent", f"{model}: {len(different)} tensors differ from the uninterrupted run ({different[0]})"
        mine, reference = load_json(run / "results.json")["models"], load_json(base / "results.json")["models"]
        for model in reference:
            if mine[model]["test_z"] != reference[model]["test_z"]:
                return "silent", f"{model} test_z {mine[model]['test_z']} vs {reference[model]['test_z']}"
        return None

    return check


def json_output(test: Callable[[Any], str | None]) -> Check:
    """Exit 0 with JSON on stdout that ``test`` finds right (None) or wrong (a reason)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        try:
            payload = json.loads(outcome.out)
        except ValueError as error:
            return "silent", f"stdout is not JSON ({error})"
        problem = test(payload)
        return ("silent", problem) if problem else None

    return check


def then(command: str, expect_rc: int = 0, after: Check | None = None, what: str = "") -> Check:
    """A follow-up command (the advice of the first one, a resume, ...) must succeed (or fail) as expected."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        second = c.cqdkit(command)
        if "Traceback" in second.text or second.rc != expect_rc:
            category = "traceback" if "Traceback" in second.text or second.rc == 1 else "silent"
            return category, f"{what or 'follow-up'} `{second.command}` exit {second.rc}: {second.tail(2)}"
        return after(c, second) if after else None

    return check


def all_of(*checks: Check) -> Check:
    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        for one in checks:
            found = one(c, outcome)
            if found:
                return found
        return None

    return check


def nothing_left(pattern: str, relative: str = ".") -> Check:
    """No file matching ``pattern`` (a temporary, a half-written file) may be left behind."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        left = [p for p in (c.d / relative).rglob(pattern)]
        return ("silent", f"left behind: {[str(p.relative_to(c.d)) for p in left]}") if left else None

    return check


# -- plugins ----------------------------------------------------------------------------------------------------

BAD_PLUGIN = '''
"""Plugins that break the rules, for the reliability sweep."""
from cqdkit.plugin import Backbone, DatasetSource, Degradation, DistillLoss, hookimpl


class RaisingOp:
    def __call__(self, views, rng):
        raise ValueError("qa-op-exploded")


class FloatOp:
    def __call__(self, views, rng):
        return views._replace(z=views.z.astype("float32"))


def exploding_factory(**params):
    raise RuntimeError("qa-factory-exploded")


def exploding_backbone(num_classes, in_chans=3, pretrained=False, **kwargs):
    raise RuntimeError("qa-backbone-exploded")


def forward_raising_backbone(num_classes, in_chans=3, pretrained=False, **kwargs):
    from torch import nn

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(in_chans, num_classes)
            self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "classifier": "classifier"}

        def forward(self, images):
            raise RuntimeError("qa-forward-exploded")

    return Broken()


class PerSampleLoss:
    def __init__(self, temperature):
        self.temperature = temperature

    def __call__(self, student, teacher):
        return (student - teacher).square().sum(dim=1)  # one value per sample: the mean is missing


class RaisingLoss:
    def __init__(self, temperature):
        self.temperature = temperature

    def __call__(self, student, teacher):
        raise ZeroDivisionError("qa-loss-exploded")


class LateRaisingLoss(RaisingLoss):
    """Passes cqdkit's probe (a batch of 2) and raises on a real batch."""

    def __call__(self, student, teacher):
        if student.shape[0] != 2:
            raise ZeroDivisionError("qa-late-loss-exploded")
        return (student - teacher).square().sum(dim=1).mean()


def exploding_dataset(root, *, skip_bad=False):
    raise KeyError("qa-dataset-exploded")


def list_dataset(root, *, skip_bad=False):
    return []


@hookimpl
def cqdkit_degradations():
    yield Degradation(name="qa-raise", summary="raises in its op", factory=RaisingOp)
    yield Degradation(name="qa-factory", summary="raises in its factory", factory=exploding_factory)
    yield Degradation(name="qa-float", summary="makes a float32 z", factory=FloatOp)


@hookimpl
def cqdkit_backbones():
    yield Backbone(name="qa-explode", summary="raises in its factory", factory=exploding_backbone)
    yield Backbone(name="qa-forward", summary="raises in its forward pass", factory=forward_raising_backbone)


@hookimpl
def cqdkit_losses():
    yield DistillLoss(name="qa-per-sample", summary="a value per sample", factory=PerSampleLoss)
    yield DistillLoss(name="qa-raise", summary="raises", factory=RaisingLoss)
    yield DistillLoss(name="qa-late-raise", summary="raises on real batches", factory=LateRaisingLoss)


@hookimpl
def cqdkit_datasets():
    yield DatasetSource(name="qa-explode", summary="raises", factory=exploding_dataset, needs_root=False)
    yield DatasetSource(name="qa-list", summary="returns a list", factory=list_dataset, needs_root=False)
'''

PLUGIN_PACKAGES = {
    "bad": ("qa_bad_plugin", BAD_PLUGIN),
    "broken": ("qa_broken_plugin", 'raise ImportError("qa-broken: a dependency is missing")\n'),
    "conflict": ("qa_conflict_plugin", textwrap.dedent('''
        from cqdkit.plugin import Degradation, hookimpl

        class Identity:
            def __call__(self, views, rng):
                return views

        @hookimpl
        def cqdkit_degradations():
            yield Degradation(name="tps", summary="a second tps", factory=Identity)
        ''')),
    "misspelt": ("qa_misspelt_plugin", textwrap.dedent('''
        from cqdkit.plugin import hookimpl

        @hookimpl
        def cqdkit_degradation():  # misspelt hook name
            return []
        ''')),
    "hookraise": ("qa_hookraise_plugin", textwrap.dedent('''
        from cqdkit.plugin import hookimpl

        @hookimpl
        def cqdkit_losses():
            raise RuntimeError("qa-hook-exploded")
            yield
        ''')),
}


def write_plugins(folder: Path) -> None:
    """One importable distribution per package (a module and a dist-info with its ``cqdkit`` entry point),
    each in its own folder, put on PYTHONPATH by the cases that want it."""
    for name, (module, code) in PLUGIN_PACKAGES.items():
        site = folder / name
        info = site / f"{module}-0.1.dist-info"
        info.mkdir(parents=True)
        (site / f"{module}.py").write_text(code)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[cqdkit]\nqa-{name} = {module}\n")


def with_plugin(name: str) -> Callable[[Context], None]:
    def setup(c: Context) -> None:
        c.env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{c.shared[f'site_{name}']}"

    return setup


# -- the cases ----------------------------------------------------------------------------------------------------


def run_error(area: str, what: str, options: str, names: tuple[str, ...] = (), **kwargs: Any) -> Case:
    """A `cqdkit run` on the tiny synthetic set that must be refused with one line."""
    return Case(area, what, f"run {{tiny}} --no-report {options} --out {{d}}/out", "error", names=names, **kwargs)


def run_ok(area: str, what: str, options: str, data: str = "{tiny}", **kwargs: Any) -> Case:
    """A `cqdkit run` that must succeed with finite results."""
    kwargs.setdefault("check", finite_results())
    return Case(area, what, f"run {data} --no-report {options} --out {{d}}/out", "ok", trains=True, **kwargs)


def option_cases() -> Iterator[Case]:
    bad_values = [
        ("--lambda", "nan"), ("--lambda", "-1"), ("--lambda", "inf"), ("--temperature", "0"),
        ("--temperature", "-2"), ("--temperature", "nan"), ("--lr", "0"), ("--lr", "nan"), ("--lr", "-0.1"),
        ("--lr-end", "-1"), ("--lr-end", "inf"), ("--momentum", "1"), ("--momentum", "-0.5"),
        ("--weight-decay", "nan"), ("--weight-decay", "-1"), ("--epochs", "0"), ("--epochs", "-3"),
        ("--batch-size", "0"), ("--image-size", "4"), ("--workers", "-1"), ("--seed", "-1"),
        ("--val-fraction", "1"), ("--val-fraction", "-0.5"), ("--val-fraction", "nan"),
        ("--folds", "1"), ("--folds", "-2"), ("--device", "bogus"), ("--device", "tpu"), ("--device", "cuda:7"),
    ]
    for option, value in bad_values:
        yield run_error("options", f"run {option} {value}", f"{option} {value}", (option, value),
                        guard=None)
    yield run_error("options", "run --seed 2**64 (beyond any RNG's seed)", "--seed 18446744073709551616",
                    ("--seed",))
    yield Case("options", "tune --folds 3 with 2 training images per class (fold 2 has no validation images)",
               "tune {tiny} --dataset-option train_per_class=2 --degrade gray --method cqd --seeds 1 --lambdas 1 "
               "--temperatures 10 --folds 3 --out {d}/out", "either", names=("fold",), trains=True, check=finite_tune())
    for option, value, names in [
        ("--epochs", "abc", ("--epochs",)), ("--lambda", "''", ("--lambda",)), ("--method", "bogus", ("--method",)),
        ("--profile", "gpu", ("--profile",)), ("--log-format", "xml", ("--log-format",)),
        ("--dataset-option", "classes", ("KEY=VALUE",)), ("--dataset-option", "=3", ("KEY=VALUE",)),
        ("--dataset-option", "classes=abc", ("classes",)), ("--dataset-option", "classes=1", ("classes",)),
        ("--dataset-option", "classes=99", ("classes",)), ("--dataset-option", "classes=3.5", ("classes",)),
        ("--dataset-option", "bogus=1", ("bogus",)), ("--dataset-option", "image_size=8", ("image_size",)),
        ("--dataset-option", "train_per_class=0", ("train_per_class",)),
    ]:
        yield run_error("options", f"run {option} {value}", f"{option} {value}", names)
    yield run_error("options", "run --pretrained with convnet-s (no pretrained weights exist)", "--pretrained",
                    ("convnet-s",))
    yield run_error("options", "run --method a-b with different teacher and student",
                    "--method a-b --teacher convnet-m", ("a-b",))
    yield run_error("options", "run --lambda nan --print-config (must not print settings)", "--lambda nan --print-config",
                    ("--lambda",))
    yield Case("options", "run --print-config: JSON that --config reads back", "run {tiny} --print-config", "ok",
               check=json_output(lambda p: None if p.get("epochs") == 1 and p.get("lam") == 20 else f"settings {p}"))
    yield Case("options", "run --root on a file for synthetic data (ignored root?)",
               "run {tiny} --no-report --root {d}/notes.txt --out {d}/out", "error", names=("--root",),
               setup=text_file("notes.txt", "mine\n"), guard=lambda c: [c.d / "notes.txt"])
    yield run_ok("options", "run --batch-size larger than the training set", "--batch-size 1000 --no-baseline")
    yield run_ok("options", "run --image-size 8 (the smallest allowed)", "--image-size 8 --no-baseline")
    yield Case("options", "run --lr-end 1e8: NaN stops with one line, the advised resume works",
               "run {tiny} --no-report --degrade gray --method b --epochs 2 --lr-end 1e8 --out {d}/out", "error",
               names=("--resume",), trains=True, quick=True, lazy=True,
               check=then("run {tiny} --no-report --degrade gray --method b --epochs 2 --lr-end 1e-3 --resume "
                          "--out {d}/out", after=finite_results(), what="the advised resume"))
    yield Case("options", "run --lr 1e8: NaN in the first epoch, then the same folder runs again",
               "run {tiny} --no-report --degrade gray --method b --lr 1e8 --out {d}/out", "error", names=("--lr",),
               trains=True, lazy=True,
               check=then("run {tiny} --no-report --degrade gray --method b --out {d}/out", after=finite_results(),
                          what="a rerun in the failed folder"))
    yield Case("options", "run --temperature 1e-30 (finite, absurd): NaN/inf stops with one line",
               "run {tiny} --no-report --method cqd --temperature 1e-30 --lambda 1 --out {d}/out", "either",
               trains=True, lazy=True, check=finite_or_stopped())
    yield Case("options", "run --lambda 1e30 (finite, absurd): stops with one line, no NaN result",
               "run {tiny} --no-report --method cqd --lambda 1e30 --out {d}/out", "either", trains=True, lazy=True,
               check=finite_or_stopped())
    yield Case("options", "run --weight-decay 1e12: weights blow up, one line, finite checkpoint kept",
               "run {tiny} --no-report --method b --weight-decay 1e12 --out {d}/out", "either", trains=True, lazy=True,
               check=finite_or_stopped())


def finite_tune() -> Check:
    """tune.json must score every cell with finite numbers."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if outcome.rc == 2:  # a clean refusal: nothing to check
            return None
        payload = load_json(c.d / "out" / "tune.json")
        for method, by_degradation in payload["methods"].items():
            for degradation, found in by_degradation.items():
                for cell in found["grid"]:
                    if not all(math.isfinite(cell[k]) for k in ("score", "val_z")):
                        return "silent", (f"tune.json {method}/{degradation} T={cell['temperature']} "
                                          f"lambda={cell['lam']}: score {cell['score']}, val_z {cell['val_z']}")
        return None

    return check


def finite_or_stopped() -> Check:
    """An absurd value either trains to finite results or stops with one line; never NaN results."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        results = c.d / "out" / "results.json"
        if results.is_file():
            return finite_results()(c, outcome)
        return None

    return check


def name_cases() -> Iterator[Case]:
    for option, value, names in [
        ("--degrade", "tsp", ("tsp", "tps")), ("--loss", "softse", ("softse",)), ("--teacher", "convnet-x", ("convnet-x",)),
        ("--student", "resnet-9000", ("resnet-9000",)), ("--teacher", "timm:no_such_model", ("no_such_model",)),
        ("--dataset", "imagenet", ("imagenet",)), ("--degrade", "lowres+blurr", ("blurr",)),
    ]:
        yield run_error("names", f"run {option} {value} (unknown name)", f"{option} {value}", names)
    yield Case("names", "unknown command", "trian", "error", names=("trian",))
    yield Case("names", "list backbones with a pattern that matches nothing", "list backbones 'zzz*'", "ok")
    yield Case("names", "inspect --dataset bogus", "inspect --dataset bogus", "error", names=("bogus",))
    yield Case("names", "inspect --dataset cub without --root", "inspect --dataset cub", "error", names=("--root",))
    yield Case("names", "table --degrade with one unknown name among good ones (before any training)",
               "table {tiny} --no-report --degrade gray,tsp --out {d}/out", "error", names=("tsp",))
    yield Case("names", "tune --method a (not a distilled method)", "tune {tiny} --method a --out {d}/out", "error",
               names=("--method",))
    yield Case("names", "tune --method cqd,bogus", "tune {tiny} --method cqd,bogus --out {d}/out", "error",
               names=("bogus",))
    yield Case("names", "export --model bogus", "export {base} --model bogus --out {d}/x.onnx", "error",
               names=("bogus",))


SPEC_ERRORS = [
    ("tsp", ("tsp",)), ("''", ("spec",)), ("+", ("name",)), ("tps+", ("name",)), ("lowres:size=0", ("size",)),
    ("lowres:size=abc", ("size",)), ("lowres:size=32,size=16", ("size",)), ("lowres:bogus=1", ("bogus",)),
    ("lowres:size", ("size",)), ("blur:severity=6", ("severity",)), ("jpeg:severity=-1", ("severity",)),
    ("tps:grid=1", ("grid",)), ("tps:sigma=inf", ("sigma",)), ("tps:sigma=-1", ("sigma",)),
    ("lowres+localization", ("localization",)), ("lowres:size=224", ("size",)), ("lowres:upsample=bogus", ("bogus",)),
    ("lowres:size=16,upsample=srcnn,weights={d}/none.safetensors", ("none.safetensors",)),
    ("lowres:size=16,upsample=srcnn,weights={d}/junk.safetensors", ("junk.safetensors",)),
    ("lowres:size=16,upsample=srcnn,weights={base}/a/model.safetensors", ("model.safetensors",)),
    ("lowres:size=16,upsample=srcnn", ("weights",)),
    ("edges:detector=sed,model={d}/none.yml.gz", ("none.yml.gz",)), ("edges:detector=bogus", ("detector",)),
    ("edges:detector=sed,model={d}/junk.yml.gz", ("junk.yml.gz",)), ("sepia:strength=9", ("strength",)),
    ("privileged:channels=bogus", ("bogus",)), ("noise:severity=3.5", ("severity",)),
]


def spec_cases() -> Iterator[Case]:
    junk = steps(lambda c: write_image(c.d / "bird.png", 64, 48), lambda c: garbage(c.d / "junk.safetensors"),
                 lambda c: garbage(c.d / "junk.yml.gz"))
    for spec, names in SPEC_ERRORS:
        yield Case("specs", f"degrade {spec!s}", f"degrade {spec} {{d}}/bird.png --size 224 --out {{d}}/look", "error",
                   names=names, setup=junk)
    yield Case("specs", "degrade tps:grid=3000 (absurd grid: memory) under a 3 GB limit",
               "degrade tps:grid=3000 {d}/bird.png --size 16 --out {d}/look", "error", names=("grid",), setup=junk,
               memory_gb=3, timeout=120)
    yield Case("specs", "degrade localization without a box", "degrade localization {d}/bird.png --out {d}/look",
               "error", names=("box",), setup=junk)
    yield Case("specs", "degrade privileged on a plain image (needs a mask)", "degrade privileged {d}/bird.png --out {d}/look",
               "error", names=("mask",), setup=junk)
    for bbox, names in [("1,2,3", ("--bbox",)), ("0,0,0,0", ("box",)), ("1000,1000,10,10", ("box",)),
                        ("nan,0,10,10", ("box",)), ("a,b,c,d", ("--bbox",))]:
        yield Case("specs", f"degrade --bbox {bbox}", f"degrade lowres {{d}}/bird.png --bbox {bbox} --crop --out {{d}}/look",
                   "error", names=names, setup=junk)
    yield Case("specs", "degrade --size 0", "degrade lowres {d}/bird.png --size 0 --out {d}/look", "error",
               names=("--size",), setup=junk)
    yield Case("specs", "degrade --seed -1", "degrade tps {d}/bird.png --seed -1 --out {d}/look", "error",
               names=("--seed",), setup=junk)
    yield Case("specs", "degrade --out is an existing file", "degrade lowres {d}/bird.png --out {d}/notes.txt", "error",
               names=("notes.txt",), setup=steps(junk, text_file("notes.txt", "mine\n")),
               guard=lambda c: [c.d / "notes.txt"])
    yield Case("specs", "degrade --out in a read-only folder", "degrade lowres {d}/bird.png --out {d}/ro/look", "error",
               names=("ro",), setup=steps(junk, lambda c: immutable(c, c.d / "ro")))
    yield run_error("specs", "run --degrade lowres:size=300 (43 px at --image-size 32: does not shrink)",
                    "--degrade lowres:size=300", ("size",))
    yield run_error("specs", "run --degrade localization+localization", "--degrade localization+localization",
                    ("localization",))
    yield Case("specs", "table --degrade ',' (no degradation at all)", "table {tiny} --no-report --degrade , --out {d}/out",
               "error", names=("--degrade",))
    yield Case("specs", "tune --degrade '' (no degradation at all)",
               "tune {tiny} --degrade '' --method cqd --seeds 1 --lambdas 1 --temperatures 10 --out {d}/out", "error",
               names=("--degrade",))
    yield Case("specs", "multires --degrade ''", "multires {tiny} --degrade '' --out {d}/out", "error",
               names=("--degrade",))


def image_cases() -> Iterator[Case]:
    """Images given to `cqdkit degrade`: every mode Pillow reads is accepted, every broken file is one line."""
    for mode in ("L", "LA", "1", "RGBA", "P+transparency", "CMYK", "I;16", "F", "GIF-animated"):
        suffix = {"CMYK": "jpg", "F": "tif", "GIF-animated": "gif"}.get(mode, "png")
        yield Case("images", f"degrade a {mode} image", f"degrade gray {{d}}/image.{suffix} --size 32 --out {{d}}/look",
                   "ok", setup=lambda c, m=mode, s=suffix: write_mode(c.d / f"image.{s}", m),
                   check=lambda c, o: None if (c.d / "look" / "image_z.png").is_file() else ("silent", "no image_z.png"))
    broken = {
        "random bytes named .png": lambda p: garbage(p),
        "an empty file": lambda p: p.write_bytes(b""),
        "a PNG cut in half": lambda p: (write_image(p, 64, 64), truncate(p)),
        "a JPEG cut at 60%": lambda p: (write_image(p, 64, 64), truncate(p, 0.6)),
        "a PNG with a flipped byte in its data": lambda p: (write_image(p, 64, 64), flip_byte(p, 0.6)),
        "a text file named .jpg": lambda p: p.write_text("hello"),
        "a PNG whose header claims 20000x20000 (decompression bomb)": lambda p: bomb(p),
    }
    for what, make in broken.items():
        suffix = "jpg" if "JPEG" in what or ".jpg" in what else "png"
        yield Case("images", f"degrade {what}", f"degrade gray {{d}}/bad.{suffix} --out {{d}}/look", "error",
                   names=(f"bad.{suffix}",), setup=lambda c, m=make, s=suffix: m(c.d / f"bad.{s}"))
    yield Case("images", "degrade a missing file", "degrade gray {d}/absent.png --out {d}/look", "error",
               names=("absent.png",))
    yield Case("images", "degrade a folder given as an image", "degrade gray {d} --out {d}/look", "error",
               names=("folder",))
    yield Case("images", "degrade a non-UTF-8 file name (Latin-1 café.png)",
               lambda c: (write_image_named(c.d / os.fsdecode(b"caf\xe9.png")),
                          c.cqdkit(["degrade", "gray", c.d / os.fsdecode(b"caf\xe9.png"), "--out", c.d / "look"]))[1],
               "ok", check=lambda c, o: None if (c.d / "look" / os.fsdecode(b"caf\xe9_z.png")).is_file() else
               ("silent", "no z written for the Latin-1 name"))
    yield Case("images", "degrade a 1x1 image", "degrade tps {d}/dot.png --size 32 --out {d}/look", "ok",
               setup=lambda c: write_image(c.d / "dot.png", 1, 1))


def flip_byte(path: Path, at: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def bomb(path: Path) -> None:
    Image.new("1", (20000, 20000)).save(path, format="PNG")


# CUB annotation damage: (what, file, line number or None to append, new text, what the error must name)
CUB_DAMAGE = [
    ("images.txt line with one field", "images.txt", 2, "2", ("images.txt", "line 2")),
    ("image_class_labels.txt: class id is a word", "image_class_labels.txt", 1, "1 sparrow", ("image_class_labels.txt",)),
    ("image_class_labels.txt: class id out of range", "image_class_labels.txt", 1, "1 9", ("image_class_labels.txt", "9")),
    ("train_test_split.txt: is_train flag 2", "train_test_split.txt", 3, "3 2", ("train_test_split.txt",)),
    ("bounding_boxes.txt: words for numbers", "bounding_boxes.txt", 1, "1 a b c d", ("bounding_boxes.txt", "line 1")),
    ("bounding_boxes.txt: zero width", "bounding_boxes.txt", 1, "1 2 3 0 15", ("bounding_boxes.txt", "line 1")),
    ("bounding_boxes.txt: negative x", "bounding_boxes.txt", 1, "1 -5 3 20 15", ("bounding_boxes.txt", "line 1")),
    ("bounding_boxes.txt: NaN height", "bounding_boxes.txt", 1, "1 2 3 20 nan", ("bounding_boxes.txt", "line 1")),
    ("bounding_boxes.txt: a second box for image 1", "bounding_boxes.txt", None, "1 2 3 10 10", ("bounding_boxes.txt",)),
    ("images.txt: image id listed twice", "images.txt", None, "1 001.Class_1/img_1.png", ("images.txt",)),
    ("images.txt: a listed file is missing", "images.txt", 1, "1 001.Class_1/absent.png", ("absent.png",)),
    ("images.txt: a listed path is a folder", "images.txt", 1, "1 001.Class_1", ("001.Class_1",)),
    ("classes.txt: class id twice", "classes.txt", None, "1 001.Again", ("classes.txt",)),
    ("image_class_labels.txt: an image without a label line", "image_class_labels.txt", 1, "", ("image id 1",)),
    ("train_test_split.txt: extra field", "train_test_split.txt", 2, "2 1 1", ("train_test_split.txt", "line 2")),
]


def dataset_cases() -> Iterator[Case]:
    # -- CUB ---------------------------------------------------------------------------------------------
    yield Case("datasets", "inspect cub: root does not exist", "inspect --dataset cub --root {d}/nowhere", "error",
               names=("nowhere",))
    yield Case("datasets", "inspect cub: root is a file", "inspect --dataset cub --root {d}/notes.txt", "error",
               names=("notes.txt",), setup=text_file("notes.txt", "x"))
    yield Case("datasets", "inspect cub: an empty folder", "inspect --dataset cub --root {d}", "error", names=("CUB",))
    yield Case("datasets", "inspect cub: classes.txt missing", "inspect --dataset cub --root {d}/cub", "error",
               names=("classes.txt",), setup=lambda c: (cub(c) / "classes.txt").unlink())
    yield Case("datasets", "inspect cub: classes.txt empty", "inspect --dataset cub --root {d}/cub", "error",
               names=("classes.txt",), setup=lambda c: (cub(c) / "classes.txt").write_text(""))
    for what, file, line, text, names in CUB_DAMAGE:
        yield Case("datasets", f"inspect cub: {what}", "inspect --dataset cub --root {d}/cub", "error", names=names,
                   setup=lambda c, f=file, n=line, t=text: damage(cub(c) / f, n, t))
    yield Case("datasets", "inspect cub: images.txt in UTF-16", "inspect --dataset cub --root {d}/cub", "error",
               names=("images.txt",), setup=lambda c: recode(cub(c) / "images.txt", "utf-16"))
    yield Case("datasets", "inspect cub: Windows line endings and a byte-order mark", "inspect --dataset cub --root {d}/cub --json",
               "ok", setup=lambda c: [crlf_bom(cub(c) / f) for f in ("images.txt", "classes.txt", "bounding_boxes.txt")],
               check=json_output(lambda p: None if (p["train"] + p["val"], p["test"]) == (12, 6) else f"sizes {p}"))
    yield Case("datasets", "inspect cub: a Latin-1 file name in images.txt and on disk",
               "inspect --dataset cub --root {d}/cub --deep --json", "ok", setup=latin1_cub,
               check=json_output(lambda p: None if p["test"] == 6 and not p["problems"] else f"{p}"))
    yield Case("datasets", "inspect cub: a Latin-1 name in images.txt that is not on disk",
               "inspect --dataset cub --root {d}/cub", "error", names=("images.txt", "line 1"),
               setup=lambda c: rewrite_line(cub(c) / "images.txt", 1, b"1 001.Class_1/caf\xe9.png"))
    yield Case("datasets", "inspect cub --deep: a corrupt PNG", "inspect --dataset cub --root {d}/cub --deep", "error",
               names=("img_1.png",), setup=lambda c: (cub(c), garbage(cub_image(c, 1, 1))))
    yield Case("datasets", "inspect cub --deep: a box past the right edge", "inspect --dataset cub --root {d}/cub --deep",
               "error", names=("outside",), setup=lambda c: rewrite_line(cub(c) / "bounding_boxes.txt", 1, "1 30 3 20 15"))
    yield Case("datasets", "inspect cub --skip-bad: truncated PNG, truncated JPEG, empty file all listed",
               "inspect --dataset cub --root {d}/cub --skip-bad --json", "ok", setup=three_bad_images,
               check=json_output(lambda p: None if len(p["problems"]) == 3 and p["train"] + p["val"] + p["test"] == 15
                                 else f"problems {p['problems']}, sizes {p['train']}+{p['val']}+{p['test']}"))
    yield Case("datasets", "inspect cub --skip-bad: every annotation problem listed, good images kept",
               "inspect --dataset cub --root {d}/cub --skip-bad --json", "ok",
               setup=lambda c: (damage(cub(c) / "images.txt", 2, "2"), damage(cub(c) / "bounding_boxes.txt", 3, "3 0 0 0 0")),
               check=json_output(lambda p: None if len(p["problems"]) == 2 and p["train"] + p["val"] + p["test"] == 16
                                 else f"problems {p['problems']}"))
    yield Case("datasets", "inspect --seed -1", "inspect --seed -1", "error", names=("--seed",))
    yield Case("datasets", "inspect --val-fraction 2", "inspect --val-fraction 2", "error", names=("2",))
    yield Case("datasets", "inspect: a synthetic cache folder with a corrupt image",
               "inspect --dataset synthetic --deep", "error", names=(".png",), setup=corrupt_synthetic_cache)
    yield Case("datasets", "inspect: two processes generate the same synthetic set at once",
               concurrent_generation, "ok")
    yield Case("datasets", "inspect: CQDKIT_CACHE is a file", "inspect --dataset synthetic", "error",
               names=("cache",), setup=steps(text_file("cachefile", "x"), lambda c: c.env.update(CQDKIT_CACHE=str(c.d / "cachefile"))))
    # -- Stanford Cars ------------------------------------------------------------------------------------
    yield Case("datasets", "inspect cars: an empty folder", "inspect --dataset cars --root {d}", "error",
               names=("Stanford Cars",))
    yield Case("datasets", "inspect cars: cars_meta.mat is random bytes", "inspect --dataset cars --root {d}/cars", "error",
               names=("cars_meta.mat",), setup=lambda c: garbage(cars(c) / "devkit" / "cars_meta.mat"))
    yield Case("datasets", "inspect cars: cars_meta.mat cut in half", "inspect --dataset cars --root {d}/cars", "error",
               names=("cars_meta.mat",), setup=lambda c: truncate(cars(c) / "devkit" / "cars_meta.mat"))
    yield Case("datasets", "inspect cars: a MATLAB v7.3 (HDF5) annotation file", "inspect --dataset cars --root {d}/cars",
               "error", names=("cars_train_annos.mat",), setup=v73_cars)
    yield Case("datasets", "inspect cars: cars_meta.mat without class_names", "inspect --dataset cars --root {d}/cars",
               "error", names=("class_names",), setup=lambda c: cars(c, meta={"names": np.array(["a"], dtype=object)}))
    yield Case("datasets", "inspect cars: the test annotation file is missing", "inspect --dataset cars --root {d}/cars",
               "error", names=("cars_test_annos_withlabels.mat",),
               setup=lambda c: (cars(c) / "cars_test_annos_withlabels.mat").unlink())
    cars_damage = [
        ("class 0", lambda rows: rows[0].update({"class": np.uint8(0)}), ("annotation 1",)),
        ("class beyond the names", lambda rows: rows[1].update({"class": np.uint8(9)}), ("annotation 2",)),
        ("x2 left of x1", lambda rows: rows[0].update({"bbox_x2": np.uint8(1)}), ("annotation 1",)),
        ("a box field is text", lambda rows: rows[0].update({"bbox_x1": "left"}), ("annotation 1", "bbox_x1")),
        ("a listed file is missing", lambda rows: rows[2].update({"fname": "absent.jpg"}), ("absent.jpg",)),
        ("a field is missing", lambda rows: [row.pop("bbox_y2") for row in rows], ("bbox_y2",)),
    ]
    for what, edit, names in cars_damage:
        yield Case("datasets", f"inspect cars: {what}", "inspect --dataset cars --root {d}/cars", "error", names=names,
                   setup=lambda c, e=edit: cars(c, edit=e))
    yield Case("datasets", "inspect cars (combined form) --skip-bad: a bad 'test' flag is skipped and listed",
               "inspect --dataset cars --root {d}/cars --skip-bad --json", "ok",
               setup=lambda c: cars(c, form="combined", edit=lambda rows: rows[1].update({"test": "maybe"})),
               check=json_output(lambda p: None if len(p["problems"]) == 1 and p["train"] + p["val"] + p["test"] == 5
                                 else f"problems {p['problems']}"))
    yield Case("datasets", "inspect cars: a box past the image edge (--deep)", "inspect --dataset cars --root {d}/cars --deep",
               "error", names=("outside",), setup=lambda c: cars(c, edit=lambda rows: rows[0].update({"bbox_x2": np.uint8(200)})))
    # -- image folders ------------------------------------------------------------------------------------
    yield Case("datasets", "inspect folder: no test/", "inspect --dataset folder --root {d}/folder", "error",
               names=("test",), setup=lambda c: shutil.rmtree(folder(c) / "test"))
    yield Case("datasets", "inspect folder: an empty class folder", "inspect --dataset folder --root {d}/folder", "error",
               names=("empty",), setup=lambda c: (folder(c) / "train" / "yak").mkdir())
    yield Case("datasets", "inspect folder: a test class without a train folder", "inspect --dataset folder --root {d}/folder",
               "error", names=("emu",), setup=lambda c: write_image(folder(c) / "test" / "emu" / "0.png"))
    for what, content, names in [
        ("bboxes.csv with a wrong header", "file,x,y,w,h\n", ("bboxes.csv", "header")),
        ("bboxes.csv with words for numbers", "path,x,y,width,height\ntrain/cat/0.jpg,a,b,c,d\n", ("bboxes.csv", "line 2")),
        ("bboxes.csv with 3 fields", "path,x,y,width,height\ntrain/cat/0.jpg,1,2\n", ("bboxes.csv", "line 2")),
        ("bboxes.csv naming an unknown image", "path,x,y,width,height\ntrain/cat/zzz.jpg,1,2,3,4\n", ("zzz.jpg",)),
        ("bboxes.csv with a zero-size box", "path,x,y,width,height\ntrain/cat/0.jpg,1,2,0,4\n", ("bboxes.csv", "line 2")),
    ]:
        yield Case("datasets", f"inspect folder: {what}", "inspect --dataset folder --root {d}/folder", "error",
                   names=names, setup=lambda c, t=content: (folder(c) / "bboxes.csv").write_text(t))
    yield Case("datasets", "inspect folder: hidden files, other extensions, a Latin-1 class name",
               "inspect --dataset folder --root {d}/folder --deep --json", "ok", setup=odd_folder,
               check=json_output(lambda p: None if p["classes"] == 4 and "caf\\xe9" in p["class_names"] else f"{p}"))
    yield Case("datasets", "inspect folder: a dangling symlink named like an image",
               "inspect --dataset folder --root {d}/folder --json", "error", names=("gone.png",),
               setup=lambda c: (folder(c) / "train" / "cat" / "gone.png").symlink_to(c.d / "nowhere.png"))
    yield Case("datasets", "inspect folder --deep: a text file named .jpg", "inspect --dataset folder --root {d}/folder --deep",
               "error", names=("fake.jpg",), setup=lambda c: (folder(c) / "train" / "cat" / "fake.jpg").write_text("x"))


def damage(path: Path, line: int | None, text: str) -> None:
    if line is None:
        append_line(path, text)
    else:
        rewrite_line(path, line, text)


def recode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text().encode(encoding))


def crlf_bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))


def latin1_cub(c: Context) -> None:
    root = cub(c)
    name = os.fsdecode(b"caf\xe9.png")
    shutil.move(root / "images" / "001.Class_1" / "img_0.png", root / "images" / "001.Class_1" / name)
    rewrite_line(root / "images.txt", 1, b"1 001.Class_1/caf\xe9.png")


def three_bad_images(c: Context) -> None:
    cub(c)
    truncate(cub_image(c, 1, 1), 0.5)
    jpeg = cub_image(c, 2, 1)
    Image.fromarray(image_array(5, 400, 300)).save(jpeg, format="JPEG")  # a JPEG named .png
    truncate(jpeg, 0.6)
    cub_image(c, 3, 5).write_bytes(b"")


def odd_folder(c: Context) -> None:
    root = folder(c)
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"not an image")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    latin = os.fsdecode(b"caf\xe9")
    for split in ("train", "test"):
        write_image_named(root / split / latin / "0.png", seed=3)


def corrupt_synthetic_cache(c: Context) -> None:
    cache = c.d / "cache"
    shutil.copytree(c.sweep.cache / "synthetic", cache / "synthetic")
    c.env["CQDKIT_CACHE"] = str(cache)
    default = next(p for p in (cache / "synthetic").iterdir() if "c12-tr40-te25-s128" in p.name) \
        if any("c12-tr40-te25-s128" in p.name for p in (cache / "synthetic").iterdir()) else None
    if default is None:  # generate the default set once into this private cache
        subprocess.run([sys.executable, "-m", "cqdkit", "inspect"], env=c.environment(), capture_output=True)
        default = next(p for p in (cache / "synthetic").iterdir() if "c12-tr40-te25-s128" in p.name)
    victim = sorted((default / "images").rglob("*.png"))[3]
    truncate(victim, 0.3)


def concurrent_generation(c: Context) -> Outcome:
    """Two `inspect` processes generate the same new synthetic set into an empty cache at the same moment."""
    c.env["CQDKIT_CACHE"] = str(c.d / "fresh-cache")
    command = "inspect --dataset synthetic --json"
    began = time.perf_counter()
    processes = [c.popen(command + " --seed 0") for _ in range(2)]
    results = [p.communicate(timeout=300) for p in processes]
    outcomes = [Outcome(c.sweep.show(c.argv(command)) + " (x2 at once)", p.returncode, o.decode(), e.decode(),
                        time.perf_counter() - began) for p, (o, e) in zip(processes, results)]
    failed = [o for o in outcomes if o.rc != 0]
    return failed[0] if failed else outcomes[0]


def v73_cars(c: Context) -> None:
    root = cars(c)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    (root / "devkit" / "cars_train_annos.mat").write_bytes(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 400)


def training_data_cases() -> Iterator[Case]:
    """Runs on datasets on disk: bad images found lazily, --skip-bad, exotic modes."""
    run_cub = "run {disk} --no-report --degrade gray --dataset cub --root {d}/cub --out {d}/out"
    yield Case("training data", "run on CUB without --skip-bad: a truncated PNG in the training split",
               run_cub, "error", names=("img_1.png",), setup=lambda c: (cub(c), truncate(cub_image(c, 1, 1))),
               trains=True, quick=True, lazy=True)
    yield Case("training data", "run on CUB without --skip-bad: a corrupt image in the test split (found after training)",
               run_cub, "error", names=("img_5.png",), setup=lambda c: (cub(c), garbage(cub_image(c, 2, 5))),
               trains=True, lazy=True)
    yield Case("training data", "run on CUB --workers 1: a corrupt image inside a DataLoader worker",
               run_cub + " --workers 1", "error", names=("img_0.png",),
               setup=lambda c: (cub(c), garbage(cub_image(c, 3, 0))), trains=True, lazy=True)
    yield Case("training data", "run on CUB --skip-bad: three bad images (train and test) skipped and listed",
               run_cub + " --skip-bad", "ok", setup=three_bad_images, trains=True, quick=True,
               check=skipped_listed("out", "img_1.png", "img_5.png", count=3))
    yield Case("training data", "run on CUB --skip-bad: every test image bad", run_cub + " --skip-bad", "error",
               names=("test",), setup=every_test_image_bad)
    yield Case("training data", "run on CUB: exotic image modes (L, LA, 1, RGBA, P, CMYK, 16-bit, float, GIF)",
               run_cub, "ok", setup=exotic_cub, trains=True, quick=True, check=finite_results())
    yield Case("training data", "run on CUB without bounding_boxes.txt --degrade localization (needs boxes)",
               "run {disk} --no-report --degrade localization --dataset cub --root {d}/cub --out {d}/out", "error",
               names=("box",), setup=lambda c: cub(c, boxes=False))
    yield Case("training data", "run on CUB with a class that has no training images (warning, then trains)",
               run_cub, "ok", trains=True, setup=lambda c: [rewrite_line(cub(c) / "train_test_split.txt", i, f"{i} 0")
                                                          for i in range(13, 17)], check=finite_results())
    yield Case("training data", "run on CUB with a Latin-1 file name", run_cub, "ok", setup=latin1_cub, trains=True,
               check=finite_results())
    yield Case("training data", "run on Stanford Cars (devkit form)",
               "run {disk} --no-report --degrade gray --dataset cars --root {d}/cars --out {d}/out", "ok",
               setup=lambda c: cars(c, train=8, test=4), trains=True, check=finite_results())
    yield Case("training data", "run on an image folder with bboxes.csv missing a line, --degrade localization",
               "run {disk} --no-report --degrade localization --dataset folder --root {d}/folder --out {d}/out", "error",
               names=("bboxes.csv",), setup=folder_missing_box, trains=True, lazy=True)
    yield Case("training data", "run on an image folder whose names are Latin-1",
               "run {disk} --no-report --degrade gray --dataset folder --root {d}/folder --out {d}/out", "ok",
               setup=odd_folder, trains=True, check=finite_results())
    yield Case("training data", "run --degrade privileged on CUB without segmentation masks",
               "run {disk} --no-report --degrade privileged --dataset cub --root {d}/cub --out {d}/out", "error",
               names=("mask",), setup=lambda c: cub(c), trains=True)


def every_test_image_bad(c: Context) -> None:
    cub(c)
    for class_id in (1, 2, 3):
        for k in (4, 5):
            garbage(cub_image(c, class_id, k), seed=class_id * 10 + k)


def exotic_cub(c: Context) -> None:
    cub(c)
    modes = ["L", "LA", "1", "RGBA", "P+transparency", "CMYK", "I;16", "F", "GIF-animated"]
    for index, mode in enumerate(modes):
        write_mode(cub_image(c, index % 3 + 1, index // 3), mode, seed=index)


def folder_missing_box(c: Context) -> None:
    root = folder(c)
    lines = ["path,x,y,width,height"] + [f"{p.relative_to(root).as_posix()},2,3,20,15"
                                           for p in sorted(root.rglob("*.*")) if p.suffix in (".png", ".jpg")][1:]
    (root / "bboxes.csv").write_text("\n".join(lines) + "\n")


def weights_cases() -> Iterator[Case]:
    def teacher(file: str, names: tuple[str, ...], setup: Callable[[Context], Any], what: str) -> Case:
        return run_error("weights", f"run --teacher-weights {what}", f"--teacher-weights {{d}}/{file}", names,
                         setup=setup)

    yield teacher("absent.safetensors", ("absent.safetensors",), lambda c: None, "a missing file")
    yield teacher("evil.pth", ("evil.pth",), pickled_code, "a .pth whose pickle runs code")
    yield teacher("cut.pth", ("cut.pth",), lambda c: (torch_save(c, "cut.pth"), truncate(c.d / "cut.pth")),
                  "a .pth cut in half")
    yield teacher("empty.pth", ("empty.pth",), lambda c: (c.d / "empty.pth").write_bytes(b""), "an empty .pth")
    yield teacher("list.pth", ("list.pth",), lambda c: torch_save(c, "list.pth", as_list=True), "a .pth holding a list")
    yield teacher("junk.safetensors", ("junk.safetensors",), lambda c: garbage(c.d / "junk.safetensors"),
                  "random bytes as .safetensors")
    yield teacher("cut.safetensors", ("cut.safetensors",),
                  lambda c: (shutil.copy(c.shared["base"] / "a" / "model.safetensors", c.d / "cut.safetensors"),
                             truncate(c.d / "cut.safetensors")), "a .safetensors cut in half")
    yield teacher("wide.safetensors", ("wide.safetensors",), convnet_m_weights, "convnet-m weights for convnet-s")
    yield teacher("meta.safetensors", ("meta.safetensors",), bad_metadata_weights, "mean/std metadata that is not numbers")
    yield teacher("weights.bin", ("weights.bin",), lambda c: garbage(c.d / "weights.bin"), "an unknown suffix (.bin)")
    yield teacher("net.mat", ("net.mat",), lambda c: garbage(c.d / "net.mat"), "random bytes as a MatConvNet .mat")
    yield teacher("folder", ("folder",), lambda c: (c.d / "folder").mkdir(), "a folder")
    yield Case("weights", "run --student-weights a .pth with pickled code: refused, code never runs",
               "run {tiny} --no-report --method cqd --student-weights {d}/evil.pth --out {d}/out", "error",
               names=("evil.pth",), setup=pickled_code,
               check=lambda c, o: ("silent", "the pickle's code ran") if (c.d / "pwned").exists() else None)
    yield run_ok("weights", "run --teacher-weights a .pth nesting a state_dict under 'state_dict'",
                 "--teacher-weights {d}/nested.pth", setup=lambda c: torch_save(c, "nested.pth", nested=True))
    yield Case("weights", "run --teacher-weights with NaN weights: refused or stopped, never NaN results",
               "run {tiny} --no-report --teacher-weights {d}/nan.safetensors --out {d}/out", "error",
               names=("nan.safetensors",), setup=nan_weights, trains=True, lazy=True, check=finite_or_stopped())
    yield Case("weights", "convert-weights: random bytes", "convert-weights {d}/net.mat --arch vggm --out {d}/w.safetensors",
               "error", names=("net.mat",), setup=lambda c: garbage(c.d / "net.mat"))
    yield Case("weights", "convert-weights: a .mat without layers", "convert-weights {d}/net.mat --arch vggm --out {d}/w.safetensors",
               "error", names=("layers",), setup=lambda c: scipy.io.savemat(c.d / "net.mat", {"x": np.zeros(3)}))
    yield Case("weights", "convert-weights: a MATLAB v7.3 file", "convert-weights {d}/net.mat --arch vggm --out {d}/w.safetensors",
               "error", names=("7.3",), setup=lambda c: v73_file(c.d / "net.mat"))
    yield Case("weights", "convert-weights: a tiny MatConvNet net that is not vgg-m",
               "convert-weights {d}/net.mat --arch vggm --out {d}/w.safetensors", "error", names=("layer",),
               setup=tiny_matconvnet)
    yield Case("weights", "convert-weights: --arch bogus", "convert-weights {d}/net.mat --arch bogus --out {d}/w.safetensors",
               "error", names=("bogus",), setup=tiny_matconvnet)
    yield Case("weights", "convert-weights: --out not .safetensors", "convert-weights {d}/net.mat --arch vggm --out {d}/w.pth",
               "error", names=("w.pth",), setup=tiny_matconvnet)
    yield Case("weights", "convert-weights: missing source", "convert-weights {d}/absent.mat --arch vggm", "error",
               names=("absent.mat",))


def torch_save(c: Context, name: str, *, as_list: bool = False, nested: bool = False) -> None:
    """A plain-tensor .pth file: a teacher's weights nested under 'state_dict', a list, or one tensor."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(c.shared["base"] / "a" / "model.safetensors")) if nested else {"w": torch.zeros(3)}
    torch.save([torch.zeros(3)] if as_list else ({"state_dict": state} if nested else state), c.d / name)


class Pwn:
    """Unpickling this runs code: it writes ``pwned`` next to the file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {shlex.quote(self.target)}",))


def pickled_code(c: Context) -> None:
    import torch

    torch.save({"state_dict": Pwn(str(c.d / "pwned"))}, c.d / "evil.pth")


def convnet_m_weights(c: Context) -> None:
    from cqdkit.models import create_backbone
    from cqdkit.models.weights import save_weights

    save_weights(create_backbone("convnet-m", num_classes=3), c.d / "wide.safetensors")


def bad_metadata_weights(c: Context) -> None:
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(c.shared["base"] / "a" / "model.safetensors")), str(c.d / "meta.safetensors"),
              metadata={"mean": "[\"red\", 1, 2]", "std": "[1, 1, 1]"})


def nan_weights(c: Context) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(c.shared["base"] / "a" / "model.safetensors"))
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()},
              str(c.d / "nan.safetensors"))


def v73_file(path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.write_bytes(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 400)


def tiny_matconvnet(c: Context) -> None:
    layer = {"type": "conv", "name": "conv1", "filters": np.zeros((3, 3, 3, 4), np.float32),
             "biases": np.zeros(4, np.float32), "stride": np.array([1, 1.0]), "pad": np.zeros(4)}
    layers = np.empty((1, 1), dtype=object)
    layers[0, 0] = layer
    scipy.io.savemat(c.d / "net.mat", {"layers": layers, "normalization": {
        "averageImage": np.array([120.0, 110, 100]), "imageSize": np.array([224.0, 224, 3])},
        "classes": {"description": np.array(["a"], dtype=object)}})


# -- checkpoints, resume, run folders --------------------------------------------------------------------------

RESUME = f"{BASE_RUN} --resume --out {{d}}/run"


def resume_cases() -> Iterator[Case]:
    def tampered(what: str, tamper: Callable[[Path], Any], expect: str = "ok", names: tuple[str, ...] = (),
                 check: Check | None = None, **kwargs: Any) -> Case:
        return Case("resume", f"--resume after a kill, with {what}", RESUME, expect, names=names,
                    setup=lambda c: tamper(interrupted_base(c)),
                    check=check or (same_weights("run") if expect == "ok" else None), trains=True, **kwargs)

    student = lambda run: run / "a-cqd"  # noqa: E731
    yield tampered("nothing damaged (exact resume)", lambda run: None, quick=True)
    yield tampered("latest.json cut in half", lambda run: truncate(student(run) / "latest.json"))
    yield tampered("latest.json empty", lambda run: (student(run) / "latest.json").write_text(""))
    yield tampered("latest.json = []", lambda run: (student(run) / "latest.json").write_text("[]"))
    yield tampered("latest.json naming a missing checkpoint",
                   lambda run: (student(run) / "latest.json").write_text('{"checkpoint": "epoch-0007.json"}'),
                   "error", ("epoch-0007",))
    yield tampered("the checkpoint's tensors cut in half", lambda run: truncate(student(run) / "epoch-0001.safetensors"),
                   "error", ("epoch-0001",))
    yield tampered("the checkpoint's JSON cut in half", lambda run: truncate(student(run) / "epoch-0001.json"),
                   "error", ("epoch-0001.json",))
    yield tampered("latest.json and every checkpoint damaged",
                   lambda run: (truncate(student(run) / "latest.json"), truncate(student(run) / "epoch-0001.json")),
                   "error", ("latest.json",))
    yield tampered("the checkpoint's 'epoch' a word",
                   lambda run: edit_json(student(run) / "epoch-0001.json", epoch="one"), "error", ("epoch-0001.json",))
    yield tampered("the teacher-logits cache cut in half", lambda run: truncate(logits_cache(run)))
    # A damaged cache is computed again (with a warning naming it), like a truncated one: same weights as
    # an uninterrupted run.
    yield tampered("a teacher-logits cache of another shape (valid file)", lambda run: reshape_cache(run, rows=3))
    yield tampered("a teacher-logits cache full of NaN (valid file)", lambda run: reshape_cache(run, nan=True))
    yield tampered("the orphan temporaries of a killed writer",
                   lambda run: [(student(run) / n).write_bytes(b"half")
                                for n in (f".epoch-0002.json.k2j4a9zz{TEMPORARY_SUFFIX}",
                                          f".log.jsonl.x7q1b2cc{TEMPORARY_SUFFIX}")],
                   check=all_of(same_weights("run"), nothing_left(f".*{TEMPORARY_SUFFIX}", "run")))
    yield tampered("the finished teacher's model.safetensors cut in half",
                   lambda run: truncate(run / "a" / "model.safetensors"))
    yield Case("resume", "--resume with config.json deleted", RESUME, "error", names=("config.json",),
               setup=lambda c: (interrupted_base(c) / "config.json").unlink())
    yield Case("resume", "--resume with config.json cut in half", RESUME, "error", names=("config.json",),
               setup=lambda c: truncate(interrupted_base(c) / "config.json"))
    yield Case("resume", "--resume with an unknown key in config.json", RESUME, "error", names=("mystery",),
               setup=lambda c: edit_json(interrupted_base(c) / "config.json", run={"mystery": 1}))
    yield Case("resume", "--resume with config.json epochs = 'two'", RESUME, "error", names=("epochs",),
               setup=lambda c: edit_json(interrupted_base(c) / "config.json", run={"epochs": "two"}))
    yield Case("resume", "--resume with a different --epochs", RESUME.replace("--epochs 2", "--epochs 3"), "error",
               names=("--epochs",), setup=interrupted_base)
    yield Case("resume", "--resume with a lower --lr (allowed)", RESUME + " --lr 0.005", "ok", setup=interrupted_base,
               trains=True, check=finite_results("run"))
    yield Case("resume", "--resume in a folder that does not exist", RESUME, "error", names=("config.json",))
    yield Case("resume", "a second run (no --resume) in a finished run's folder: refused, nothing touched",
               BASE_RUN + " --out {d}/run", "error", names=("--resume",), setup=copy_base, guard=lambda c: [c.d / "run"])
    yield Case("resume", "--resume of a finished run: nothing retrained, results unchanged", RESUME, "ok",
               setup=copy_base, guard=lambda c: [c.d / "run" / "a" / "model.safetensors",
                                                 c.d / "run" / "a-cqd" / "model.safetensors"],
               check=same_weights("run"))
    yield Case("resume", "run --out a folder holding a user's own config.json and results.json",
               "run {tiny} --no-report --degrade gray --method b --out {d}/mine", "either", trains=True, quick=True,
               setup=steps(text_file("mine/config.json", '{"my": "settings"}\n'),
                           text_file("mine/results.json", '{"my": "results"}\n')),
               guard=lambda c: [c.d / "mine" / "config.json", c.d / "mine" / "results.json"])
    yield Case("resume", "run --out a folder holding a user's hidden .notes.tmp file",
               "run {tiny} --no-report --degrade gray --method b --out {d}/mine", "either", trains=True,
               setup=text_file("mine/drafts/.notes.tmp", "a user's draft\n"),
               guard=lambda c: [c.d / "mine" / "drafts" / ".notes.tmp"])
    yield Case("resume", "report on a folder that is not a run, holding a user's hidden .draft.tmp",
               "report {d}/mine", "error", names=("mine",), setup=text_file("mine/.draft.tmp", "a user's draft\n"),
               guard=lambda c: [c.d / "mine" / ".draft.tmp"])


def edit_json(path: Path, **changes: Any) -> None:
    payload = load_json(path)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict):
            payload[key].update(value)
        else:
            payload[key] = value
    path.write_text(json.dumps(payload))


def logits_cache(run: Path) -> Path:
    return next((run / "a").glob("teacher-logits-*.safetensors"))


def reshape_cache(run: Path, *, rows: int | None = None, nan: bool = False) -> None:
    from safetensors.torch import load_file, save_file

    path = logits_cache(run)
    logits = load_file(str(path))["logits"]
    logits = logits[:rows] if rows else logits * float("nan")
    save_file({"logits": logits.contiguous()}, str(path))


# -- concurrency and kills --------------------------------------------------------------------------------------


def wait_for_lock(c: Context, process: subprocess.Popen, folder: Path, timeout: float = 120) -> bool:
    lock = folder / ".cqdkit.lock"
    end = time.monotonic() + timeout
    while time.monotonic() < end and process.poll() is None:
        try:
            if str(process.pid) in lock.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def second_writer(first: str, second: str) -> Callable[[Context], Outcome]:
    """``second`` starts while ``first`` holds the folder; ``first`` must still finish with its results."""

    def flow(c: Context) -> Outcome:
        process = c.popen(first)
        try:
            if not wait_for_lock(c, process, c.d / "out"):
                out, err = process.communicate()
                return Outcome("(first run)", process.returncode, out.decode(), err.decode())
            outcome = c.cqdkit(second)
            if str(process.pid) not in outcome.text and outcome.rc == 2:
                outcome.err += "\n(note: the refusal does not name the owner's pid)"
        finally:
            out, err = process.communicate(timeout=600)
        c.first = Outcome(c.sweep.show(c.argv(first)), process.returncode, out.decode(), err.decode())
        outcome.command += f"   while `{c.first.command}` runs"
        return outcome

    return flow


def first_finished(c: Context, outcome: Outcome) -> tuple[str, str] | None:
    first: Outcome = c.first
    if first.rc != 0:
        return "traceback" if "Traceback" in first.text else "silent", f"the first run failed: {first.tail(2)}"
    return finite_results()(c, outcome)


def killed_then_resumed(moment: float, sig: int = signal.SIGKILL) -> Callable[[Context], Outcome]:
    """The base run, killed ``moment`` (a fraction of its duration) in with ``sig``, then resumed with the same
    command line plus --resume (or rerun when the kill came before config.json was written)."""

    def flow(c: Context) -> Outcome:
        command = f"{BASE_RUN} --out {{d}}/run"
        delay = moment * float(str(c.shared["base_seconds"]))
        process = c.popen(command)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, sig)
        out, err = process.communicate()
        if sig != signal.SIGKILL and ("Traceback" in (out + err).decode() or process.returncode == 1):
            return Outcome(f"{c.sweep.show(c.argv(command))} (signal {sig.name} after {delay:.1f} s)",
                           process.returncode, out.decode(), err.decode())
        resumed = c.cqdkit(command + " --resume")
        if resumed.rc == 2 and "no config.json" in resumed.text:
            resumed = c.cqdkit(command)
            resumed.command += "  (killed before config.json: rerun without --resume)"
        resumed.command = f"{c.sweep.show(c.argv(command))}, {sig.name} after {delay:.1f} s; then {resumed.command}"
        return resumed

    return flow


def table_killed_then_continued(moment: float) -> Callable[[Context], Outcome]:
    """A table, killed ``moment`` (a fraction of an uninterrupted table's duration) in; the same command again
    continues it. Its numbers must be those of the uninterrupted table (``c.reference``)."""

    def flow(c: Context) -> Outcome:
        command = "table {tiny} --no-report --degrade gray --out {d}/%s"
        reference = c.cqdkit(command % "reference")
        if reference.rc != 0:
            return reference
        process = c.popen(command % "table")
        time.sleep(moment * reference.seconds)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        again = c.cqdkit(command % "table")
        again.command = f"{again.command}, after a kill -9 at {moment * reference.seconds:.1f} s"
        return again

    return flow


def same_table(c: Context, outcome: Outcome) -> tuple[str, str] | None:
    mine, reference = (load_json(c.d / name / "table.json")["raw"] for name in ("table", "reference"))
    return None if mine == reference else ("silent", f"table.json differs: {mine} vs {reference}")


def generation_killed(c: Context) -> Outcome:
    """`inspect` generating the default synthetic set into an empty cache, killed half-way; then again."""
    c.env["CQDKIT_CACHE"] = str(c.d / "cache")
    first = c.popen("inspect --dataset synthetic --json")
    time.sleep(4)
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    again = c.cqdkit("inspect --dataset synthetic --json")
    again.command += ", after a kill -9 of the same command 4 s into generating the set"
    return again


def no_orphans_in_cache(c: Context, outcome: Outcome) -> tuple[str, str] | None:
    found = json_output(lambda p: None if p["train"] + p["val"] == 480 and p["test"] == 300 else f"sizes {p}")(c, outcome)
    if found:
        return found
    orphans = [p.name for p in (c.d / "cache" / "synthetic").iterdir() if p.name.startswith(".tmp")]
    return ("silent", f"the killed generator's half-written folder stays in the cache: {orphans}") if orphans else None


def concurrency_cases(kills: list[float]) -> Iterator[Case]:
    run = "run {tiny} --no-report --epochs 2 --out {d}/out"
    yield Case("concurrency", "two runs on one --out at once: the second is refused, the first finishes",
               second_writer(run, run.replace("--epochs 2", "--epochs 1")), "error", names=("in use", "pid"),
               trains=True, quick=True, check=first_finished)
    yield Case("concurrency", "table on the folder of a running run: refused",
               second_writer(run, "table {tiny} --no-report --degrade gray --out {d}/out"), "error", names=("in use",),
               trains=True, check=first_finished)
    yield Case("concurrency", "report on the folder of a running run: refused",
               second_writer(run, "report {d}/out"), "error", names=("in use",), trains=True, check=first_finished)
    for moment in kills:
        yield Case("concurrency", f"kill -9 at {moment:.0%} of the run, then --resume: same weights bit for bit",
                   killed_then_resumed(moment), "ok", trains=True, quick=moment == kills[0], check=same_weights("run"))
    yield Case("concurrency", "SIGTERM at 60% of the run, then --resume: same weights bit for bit",
               killed_then_resumed(0.6, signal.SIGTERM), "ok", trains=True, check=same_weights("run"))
    yield Case("concurrency", "Ctrl-C (SIGINT) at 50% of the run: no traceback; --resume gives the same weights",
               killed_then_resumed(0.5, signal.SIGINT), "ok", trains=True, check=same_weights("run"))
    yield Case("concurrency", "kill -9 of a table half-way; the same command continues it to the same numbers",
               table_killed_then_continued(0.5), "ok", trains=True, check=same_table)
    yield Case("concurrency", "kill -9 while the synthetic set is generated; the next command generates it whole",
               generation_killed, "ok", check=no_orphans_in_cache)


# -- disks and folders --------------------------------------------------------------------------------------------


def disk_cases() -> Iterator[Case]:
    yield Case("disk", "run --out under a regular file", "run {tiny} --no-report --out {d}/notes.txt/out", "error",
               names=("notes.txt",), setup=text_file("notes.txt", "x"), guard=lambda c: [c.d / "notes.txt"])
    yield Case("disk", "run --out in a read-only folder", "run {tiny} --no-report --out {d}/ro/out", "error",
               names=("ro",), setup=lambda c: immutable(c, c.d / "ro"))
    yield Case("disk", "run --out on a full disk (600 KB tmpfs): one line, no temporaries left",
               "run {tiny} --no-report --degrade gray --out {d}/full/out", "error", names=("space",),
               setup=lambda c: small_disk(c, c.d / "full"), trains=True, quick=True,
               check=nothing_left(".*.tmp", "full"))
    yield Case("disk", "table --out in a read-only folder", "table {tiny} --no-report --degrade gray --out {d}/ro/out",
               "error", names=("ro",), setup=lambda c: immutable(c, c.d / "ro"))
    yield Case("disk", "CQDKIT_CACHE in a read-only folder (the synthetic set must be generated)",
               "inspect --dataset synthetic --json", "error", names=("ro",),
               setup=lambda c: (immutable(c, c.d / "ro"), c.env.update(CQDKIT_CACHE=str(c.d / "ro" / "cache"))))
    yield Case("disk", "report --out in a read-only folder", "report {d}/run --out {d}/ro/report --examples 0", "error",
               names=("ro",), setup=lambda c: (copy_base(c), immutable(c, c.d / "ro")))
    yield Case("disk", "export --out on a full disk: one line, the previous export intact",
               "export {d}/run --out {d}/full/student.onnx", "error", names=("space",), setup=full_disk_export,
               guard=lambda c: [c.d / "full" / "student.onnx", c.d / "full" / "student.onnx.json"])
    yield Case("disk", "sr-train --out in a read-only folder",
               "sr-train {tiny_sr} --out {d}/ro/sr.safetensors", "error", names=("ro",),
               setup=lambda c: immutable(c, c.d / "ro"))
    yield Case("disk", "run --out with a non-UTF-8 folder name",
               lambda c: c.cqdkit(["run", *shlex.split(TINY), "--degrade", "gray", "--method", "b",
                                   "--out", c.d / os.fsdecode(b"r\xe9sultats")]),
               "ok", trains=True, check=finite_results(os.fsdecode(b"r\xe9sultats")))


def full_disk_export(c: Context) -> None:
    copy_base(c)
    full = small_disk(c, c.d / "full", "1200k")
    subprocess.run([sys.executable, "-m", "cqdkit", "export", str(c.d / "run"), "--out", str(full / "student.onnx")],
                   env=c.environment(), capture_output=True, check=True)
    (full / "filler").write_bytes(b"\0" * (full_free(full) - 20_000))


def full_free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


# -- export ------------------------------------------------------------------------------------------------------


def export_cases() -> Iterator[Case]:
    export = "export {d}/run --out {d}/student.onnx"
    yield Case("export", "export over an unrelated file: refused, the file intact", export, "error",
               names=("student.onnx", "--force"), setup=steps(copy_base, text_file("student.onnx", "my notes\n")),
               guard=lambda c: [c.d / "student.onnx"])
    yield Case("export", "export where <out>.json is an unrelated file: refused, intact", export, "error",
               names=("student.onnx.json",), setup=steps(copy_base, text_file("student.onnx.json", '{"mine": 1}\n')),
               guard=lambda c: [c.d / "student.onnx.json"])
    yield Case("export", "export --force over an unrelated file (replaced on purpose)", export + " --force", "ok",
               setup=steps(copy_base, text_file("student.onnx", "my notes\n")), check=exported("student.onnx"))
    yield Case("export", "export twice: the previous export is replaced", export, "ok",
               setup=lambda c: (copy_base(c), c.cqdkit(export)), check=exported("student.onnx"))
    yield Case("export", "export --format torchscript", "export {d}/run --format torchscript --out {d}/m.pt", "ok",
               setup=copy_base, check=exported("m.pt"))
    yield Case("export", "export --out is a folder", "export {d}/run --out {d}/run", "error", names=("--out",),
               setup=copy_base)
    yield Case("export", "export a folder that is not a run", "export {d}", "error", names=("results.json",))
    yield Case("export", "export a run whose model.safetensors is cut in half", export, "error",
               names=("model.safetensors",), setup=lambda c: truncate(copy_base(c) / "a-cqd" / "model.safetensors"))
    yield Case("export", "export a run whose model.json is missing", export, "error", names=("model.json",),
               setup=lambda c: (copy_base(c) / "a-cqd" / "model.json").unlink())
    yield Case("export", "export a run whose model.json has mean = 'abc'", export, "error", names=("model.json",),
               setup=lambda c: edit_json(copy_base(c) / "a-cqd" / "model.json", mean="abc"))
    yield Case("export", "export a run whose model.json names an unknown architecture", export, "error",
               names=("convnet-q",), setup=lambda c: edit_json(copy_base(c) / "a-cqd" / "model.json", architecture="convnet-q"))
    yield Case("export", "export a run whose model.json says 5 classes (weights have 3)", export, "error",
               names=("model.safetensors",), setup=lambda c: edit_json(copy_base(c) / "a-cqd" / "model.json", num_classes=5))
    yield Case("export", "export a run whose results.json has no method", export, "error", names=("results.json",),
               setup=lambda c: write_results(copy_base(c), {"models": {}}))
    yield Case("export", "export a run whose results.json is cut in half", export, "error", names=("results.json",),
               setup=lambda c: truncate(copy_base(c) / "results.json"))


def exported(name: str) -> Check:
    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        path = c.d / name
        metadata = path.with_name(path.name + ".json")
        if not path.is_file() or path.stat().st_size < 1000 or not metadata.is_file():
            return "silent", f"exit 0 but {name} or its .json is missing or tiny"
        difference = load_json(metadata).get("max_abs_difference_vs_torch")
        if difference is None or not difference <= 1e-3:
            return "silent", f"max_abs_difference_vs_torch = {difference}"
        return None

    return check


def write_results(run: Path, payload: dict[str, Any]) -> None:
    (run / "results.json").write_text(json.dumps(payload))


# -- config files -------------------------------------------------------------------------------------------------


#: The tiny training settings as a config file's keys and (TOML) values.
TINY_SETTINGS = {
    "dataset-option": '{classes = "3", train_per_class = "8", test_per_class = "4", image_size = "48"}',
    "image-size": "32", "batch-size": "8", "epochs": "1", "teacher": '"convnet-s"', "student": '"convnet-s"',
    "quiet": "true", "amp": "false", "report": "false", "degrade": '"gray"',
}


def tiny_toml(changes: dict[str, str]) -> str:
    """A TOML config file of the tiny settings with some values replaced or added (given as TOML text)."""
    return "".join(f"{key} = {value}\n" for key, value in {**TINY_SETTINGS, **changes}.items())


def config_cases() -> Iterator[Case]:
    def config(what: str, name: str, content: str | bytes, expect: str = "error", names: tuple[str, ...] = (),
               command: str = "run --config {d}/{name} --out {d}/out", **kwargs: Any) -> Case:
        title = what if what.startswith(("table", "tune")) else f"--config {what}"
        return Case("config", title, command.replace("{name}", name), expect, names=names,
                    setup=text_file(name, content), **kwargs)

    def setting(key: str, value: str, names: tuple[str, ...], expect: str = "error", **kwargs: Any) -> Case:
        """The tiny settings from a file, with one bad value; nothing on the command line overrides it."""
        return config(f"with {key} = {value}", "c.toml", tiny_toml({key: value}), expect, names, **kwargs)

    yield config("holding the tiny settings (a run from a file)", "c.toml", tiny_toml({}), "ok", trains=True,
                 check=finite_results())
    yield setting("mystery", "3", ("mystery",))
    yield setting("lamda", "5", ("lamda", "lambda"))
    yield config("that is not TOML", "c.toml", "epochs = = 3\n", names=("c.toml",))
    yield config("that is not YAML", "c.yaml", "epochs: [1, 2\n", names=("c.yaml",))
    yield config("that is not JSON", "c.json", "{epochs: 1}\n", names=("c.json",))
    yield config("with an unknown suffix (.ini)", "c.ini", "[run]\nepochs = 1\n", names=(".ini",))
    yield config("YAML that is a list", "c.yaml", "- epochs\n- 1\n", names=("c.yaml",))
    yield setting("epochs", "'abc'", ("epochs",))
    yield setting("lambda", "nan", ("--lambda",))
    yield setting("seed", "-1", ("--seed",))
    yield setting("degrade", "5", ("5",))
    yield setting("fold", "'x'", ("fold",))
    yield setting("cache_teacher", "'no'", ("cache_teacher",), trains=True)
    yield setting("dataset-option", "'classes=3'", ("dataset-option",))
    yield setting("dataset-option", '{classes = [1, 2]}', ("classes",))
    yield setting("config", "'other.toml'", ("config",))
    yield config("not UTF-8", "c.toml", b"degrade = 'caf\xe9'\n", names=("c.toml",))
    yield Case("config", "--config a missing file", "run {tiny} --config {d}/absent.toml --out {d}/out", "error",
               names=("absent.toml",))
    yield Case("config", "--config a folder", "run {tiny} --config {d} --out {d}/out", "error", names=("--config",))
    yield config("a run's own config.json (--print-config)", "config.json", "", "ok",
                 command="run --config {base}/config.json --print-config",
                 check=json_output(lambda p: None if p.get("epochs") == 2 and p.get("degrade") == "tps" else f"{p}"))
    yield config("table --tuned: a tune.json that is a list", "tune.json", "[]\n", names=("tune.json",),
                 command="table {tiny} --no-report --degrade gray --tuned {d}/{name} --out {d}/out")
    yield config("table --tuned: chosen lambda is a word", "tune.json",
                 '{"methods": {"a-cqd": {"gray": {"chosen": {"temperature": 4, "lam": "lots"}}}}}\n',
                 names=("lam",), command="table {tiny} --no-report --degrade gray --tuned {d}/{name} --out {d}/out",
                 trains=True)
    yield config("table --tuned: chosen lambda -5 (checked before training?)", "tune.json",
                 '{"methods": {"a-cqd": {"gray": {"chosen": {"temperature": 4, "lam": -5}}}}}\n',
                 names=("--lambda",), command="table {tiny} --no-report --degrade gray --tuned {d}/{name} --out {d}/out",
                 trains=True)
    yield config("table --tuned: an unknown key in chosen", "tune.json",
                 '{"methods": {"a-cqd": {"gray": {"chosen": {"temperature": 4, "lam": 5, "beta": 1}}}}}\n',
                 names=("beta",), command="table {tiny} --no-report --degrade gray --tuned {d}/{name} --out {d}/out",
                 trains=True)
    yield Case("config", "tune --temperatures 1,abc", "tune {tiny} --temperatures 1,abc --out {d}/out", "error",
               names=("--temperatures",))
    yield Case("config", "tune --lambdas -1", "tune {tiny} --lambdas -1 --out {d}/out", "error", names=("--lambdas",))
    yield Case("config", "tune --temperatures '' (an empty grid)", "tune {tiny} --method cqd --temperatures '' --seeds 1 "
               "--lambdas 1 --out {d}/out", "error", names=("--temperatures",))
    yield Case("config", "table --seeds 0", "table {tiny} --seeds 0 --out {d}/out", "error", names=("--seeds",))


# -- plugins -----------------------------------------------------------------------------------------------------


def plugin_cases() -> Iterator[Case]:
    def plugin(what: str, command: str, package: str = "bad", names: tuple[str, ...] = ("qa",),
               expect: str = "error", setup: Callable[[Context], Any] | None = None, **kwargs: Any) -> Case:
        prepare = steps(with_plugin(package), setup) if setup else with_plugin(package)
        return Case("plugins", what, command, expect, names=names, setup=prepare, **kwargs)

    run = "run {tiny} --no-report --out {d}/out "
    yield plugin("a degradation plugin whose op raises (run)", run + "--degrade qa-raise", names=("qa-bad", "qa-op-exploded"))
    yield plugin("a degradation plugin whose op raises (degrade)", "degrade qa-raise {d}/bird.png --out {d}/look",
                 names=("qa-op-exploded",), setup=lambda c: write_image(c.d / "bird.png"))
    yield plugin("a degradation plugin whose op raises, in a DataLoader worker",
                 run + "--degrade qa-raise --workers 1", names=("qa-op-exploded",))
    yield plugin("a degradation plugin whose factory raises", run + "--degrade qa-factory", names=("qa-factory-exploded",))
    yield plugin("a degradation plugin that makes a float32 z", run + "--degrade qa-float", names=("qa-float", "uint8"))
    yield plugin("a backbone plugin whose factory raises", run + "--teacher qa-explode", names=("qa-backbone-exploded",))
    yield plugin("a backbone plugin whose forward pass raises", run + "--teacher qa-forward --student qa-forward",
                 names=("qa-forward-exploded",))
    yield plugin("a per-sample loss plugin (no mean)", run + "--loss qa-per-sample --method cqd", names=("qa-per-sample", "mean"))
    yield plugin("a loss plugin that raises", run + "--loss qa-raise --method cqd", names=("qa-loss-exploded",))
    yield plugin("a loss plugin that raises only on real batches (after the teacher trained)",
                 run + "--loss qa-late-raise --method cqd", names=("qa-late-loss-exploded",), trains=True, lazy=True)
    yield plugin("a dataset plugin that raises", "inspect --dataset qa-explode", names=("qa-dataset-exploded",))
    yield plugin("a dataset plugin that returns a list", "inspect --dataset qa-list", names=("qa-list",))
    yield plugin("a plugin that fails to import: other commands still work",
                 "run {tiny} --no-report --degrade gray --method b --out {d}/out", "broken", expect="ok", trains=True,
                 check=finite_results())
    yield plugin("a plugin that fails to import: --version names the problem", "--version", "broken", expect="ok",
                 check=lambda c, o: None if "qa-broken" in o.text else ("silent", "--version does not mention it"))
    yield plugin("a plugin with a misspelt hook: `plugins` still lists the rest", "plugins --json", "misspelt", expect="ok",
                 check=json_output(lambda p: None if any(e["name"] == "tps" for e in p) else "tps missing"))
    yield plugin("a plugin whose losses hook raises: --loss softce still works",
                 "run {tiny} --no-report --degrade gray --method cqd --no-baseline --out {d}/out", "hookraise",
                 expect="ok", trains=True, check=finite_results())
    yield plugin("a plugin that also provides 'tps'", run + "--degrade tps", "conflict", names=("tps", "qa"))
    yield plugin("--no-plugins hides a broken plugin", "--no-plugins --version", "broken", expect="ok",
                 check=lambda c, o: None if "qa-broken" not in o.text else ("silent", "still mentioned"))


# -- other commands ----------------------------------------------------------------------------------------------


def command_cases() -> Iterator[Case]:
    yield Case("commands", "report on a folder that is not a run", "report {d}", "error", names=("run",))
    yield Case("commands", "report on an unfinished run", "report {d}/run", "error", names=("--resume",),
               setup=interrupted_base)
    yield Case("commands", "report on a run whose log.jsonl holds bytes that are not UTF-8", "report {d}/run --examples 0",
               "error", names=("log.jsonl",), setup=lambda c: (copy_base(c) / "b" / "log.jsonl").write_bytes(b"\xff\xfe\x00garbage"))
    yield Case("commands", "report on a run whose log.jsonl has a line that is not JSON", "report {d}/run --examples 0",
               "error", names=("log.jsonl",), setup=lambda c: append_line(copy_base(c) / "b" / "log.jsonl", "{oops"))
    yield Case("commands", "report on a run whose results.json 'models' is a list", "report {d}/run --examples 0",
               "error", names=("results.json",),
               setup=lambda c: edit_json(copy_base(c) / "results.json", models=["a", "b"]))
    yield Case("commands", "report on a run whose student model.safetensors is cut in half (examples left out, noted)",
               "report {d}/run --examples 2", "ok", setup=lambda c: truncate(copy_base(c) / "a-cqd" / "model.safetensors"),
               check=lambda c, o: None if (c.d / "run" / "report" / "index.html").is_file() else ("silent", "no index.html"))
    yield Case("commands", "report --examples 0 on a good run", "report {d}/run --examples 0", "ok", setup=copy_base,
               check=lambda c, o: None if (c.d / "run" / "report" / "index.html").is_file() else ("silent", "no index.html"))
    yield Case("commands", "report on a table folder whose table.json lacks rows", "report {d}/tab", "error",
               names=("table.json",), setup=text_file("tab/table.json", '{"degradations": [], "seeds": [0]}\n'))
    yield Case("commands", "explain on a folder that is not a run", "explain {d} --images 4 --quiet", "error",
               names=("config.json",))
    yield Case("commands", "explain --images 0", "explain {base} --images 0", "error", names=("--images",))
    yield Case("commands", "explain a run whose config.json is cut in half", "explain {d}/run --images 4 --quiet", "error",
               names=("config.json",), setup=lambda c: truncate(copy_base(c) / "config.json"))
    yield Case("commands", "explain a tps run (tau skipped, figures written)", "explain {d}/run --images 4 --examples 2 --quiet",
               "ok", setup=copy_base, trains=True,
               check=lambda c, o: None if (c.d / "run" / "explain" / "report.json").is_file() else ("silent", "no report.json"))
    sr = "sr-train {tiny_sr} --out {d}/sr.safetensors"
    yield Case("commands", "sr-train --lr nan", sr + " --lr nan", "error", names=("--lr",))
    yield Case("commands", "sr-train --lr -1", sr + " --lr -1", "error", names=("lr",))
    yield Case("commands", "sr-train --size 300 (does not shrink a 224 view)", sr + " --size 300", "error", names=("size=300",))
    yield Case("commands", "sr-train --patch 200 (larger than the 32-pixel views: whole images, as documented)",
               sr + " --patch 200", "ok", check=lambda c, o: None if (c.d / "sr.json").is_file() else ("silent", "no sr.json"))
    yield Case("commands", "sr-train --device bogus", sr + " --device bogus", "error", names=("bogus",))
    yield Case("commands", "sr-train --out not .safetensors", "sr-train {tiny_sr} --out {d}/sr.pth", "error",
               names=("sr.pth",))
    yield Case("commands", "sr-train where <out>.json (its sidecar) is an unrelated file", sr, "either",
               setup=text_file("sr.json", '{"my": "notes"}\n'), guard=lambda c: [c.d / "sr.json"], trains=True)
    yield Case("commands", "multires --degrade bogus", "multires {tiny} --degrade bogus --out {d}/out", "error",
               names=("bogus",))
    yield Case("commands", "multires --method (not an option)", "multires {tiny} --method cqd --out {d}/out", "error",
               names=("--method",))
    yield Case("commands", "plugins --json", "plugins --json", "ok", check=json_output(lambda p: None if p else "empty"))


TINY_SR = ("--dataset-option classes=3 --dataset-option train_per_class=8 --dataset-option test_per_class=4 "
           "--dataset-option image_size=48 --image-size 32 --epochs 1 --batch-size 8 --quiet")


def all_cases(quick: bool) -> list[Case]:
    rng = random.Random(14)
    kills = sorted(rng.uniform(0.15, 0.95) for _ in range(5))
    groups = [option_cases(), name_cases(), spec_cases(), image_cases(), dataset_cases(), training_data_cases(),
              weights_cases(), resume_cases(), concurrency_cases(kills), disk_cases(), export_cases(), config_cases(),
              plugin_cases(), command_cases()]
    cases = [case for group in groups for case in group]
    return [case for case in cases if not quick or not case.trains or case.quick]


# -- reporting ---------------------------------------------------------------------------------------------------


def summary(verdicts: list[Verdict]) -> dict[str, Any]:
    per_area: dict[str, Counter] = defaultdict(Counter)
    for verdict in verdicts:
        per_area[verdict.case.area][verdict.category] += 1
    total = sum(per_area.values(), Counter())
    return {"tried": len(verdicts), "counts": dict(total), "per_area": {a: dict(c) for a, c in per_area.items()}}


def print_table(verdicts: list[Verdict], seconds: float) -> None:
    columns = ["clean", "traceback", "silent", "data lost", "other"]
    per_area: dict[str, Counter] = defaultdict(Counter)
    for verdict in verdicts:
        column = verdict.category if verdict.category in columns else "other"
        per_area[verdict.case.area][column] += 1
        per_area[verdict.case.area]["tried"] += 1
    total = sum(per_area.values(), Counter())
    print(f"\n{'area':14s}{'tried':>7s}" + "".join(f"{c:>11s}" for c in columns))
    for area, counts in [*per_area.items(), ("total", total)]:
        print(f"{area:14s}{counts['tried']:7d}" + "".join(f"{counts[c]:11d}" for c in columns))
    others = Counter(v.category for v in verdicts if v.category not in columns)
    if others:
        print("other = " + ", ".join(f"{n} {k}" for k, n in others.items()))
    print(f"wall time {seconds / 60:.1f} min")
    bad = [v for v in verdicts if v.category != "clean"]
    if bad:
        print(f"\n{len(bad)} cases that are not clean:")
    for verdict in bad:
        print(f"\n[{verdict.category}] {verdict.case.area}: {verdict.case.what}\n  $ {verdict.outcome.command}\n"
              f"  expected: {verdict.case.expected}\n  got: {verdict.note[:600]}")


def as_json(sweep: Sweep, seconds: float, quick: bool) -> dict[str, Any]:
    return {
        "issue": 14,
        "quick": quick,
        "wall_seconds": round(seconds, 1),
        "python": sys.version.split()[0],
        **summary(sweep.verdicts),
        "cases": [{
            "area": v.case.area, "what": v.case.what, "command": v.outcome.command, "expected": v.case.expected,
            "category": v.category, "note": v.note[:1000], "exit_status": v.outcome.rc,
            "seconds": round(v.outcome.seconds, 1),
        } for v in sweep.verdicts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip most cases that train")
    parser.add_argument("--json", type=Path, help="write every case and its outcome here")
    parser.add_argument("--only", help="run only the cases whose area or description contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    if args.list:
        for case in all_cases(args.quick):
            if not args.only or args.only in case.area or args.only in case.what:
                print(f"{case.area:14s} {'train' if case.trains else '     '} {case.what}")
        return
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="cqdkit-sweep-"))
    sweep = Sweep(work, args.quick)
    try:
        cases = all_cases(args.quick)
        if args.only:
            cases = [c for c in cases if args.only in c.area or args.only in c.what]
        print(f"{len(cases)} cases in {work}; preparing the shared run ...", flush=True)
        sweep.prepare()
        sweep.run(cases)
    finally:
        seconds = time.perf_counter() - began
        if sweep.verdicts:
            print_table(sweep.verdicts, seconds)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(as_json(sweep, seconds, args.quick), indent=2) + "\n")
        if args.keep:
            print(f"kept {work}")
        else:
            subprocess.run(["chattr", "-R", "-i", str(work)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
