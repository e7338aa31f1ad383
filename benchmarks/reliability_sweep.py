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
#: The finished run that resume, export, report and kill cases start from (and compare against). Its strength is
#: fixed: chosen on validation ("auto", the CPU profile's), the student may be B's model, with no checkpoint.
BASE_RUN = f"run --degrade tps {TINY.replace('--epochs 1', '--epochs 2')} --lambda 20 --temperature 10 --no-report"


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
            print(f"{mark}[{index:3d}/{len(cases)}] {case.area:15s} {verdict.category:10s} "
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
    """The base run as a kill after the student's last checkpoint leaves it: A finished, the student's final
    checkpoint named by latest.json but no model.safetensors yet (a finished training keeps only its last
    checkpoint, so there is no earlier one to go back to), no B, no results."""
    run = copy_base(c)
    student = run / "a-cqd"
    for name in ("model.safetensors", "model.json"):
        (student / name).unlink()
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
               check=json_output(lambda p: None if p.get("epochs") == 1 and p.get("teacher") == "convnet-s" else
                                 f"settings {p}"))  # (its lambda is the CPU profile's "auto" now, not 20)
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
    yield tampered("the checkpoint's tensors cut in half", lambda run: truncate(student(run) / "epoch-0002.safetensors"),
                   "error", ("epoch-0002",))
    yield tampered("the checkpoint's JSON cut in half", lambda run: truncate(student(run) / "epoch-0002.json"),
                   "error", ("epoch-0002.json",))
    yield tampered("latest.json and every checkpoint damaged",
                   lambda run: (truncate(student(run) / "latest.json"), truncate(student(run) / "epoch-0002.json")),
                   "error", ("latest.json",))
    yield tampered("the checkpoint's 'epoch' a word",
                   lambda run: edit_json(student(run) / "epoch-0002.json", epoch="one"), "error", ("epoch-0002.json",))
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
    yield plugin("a plugin that also provides 'tps': the first provider (cqdkit's) is kept, the clash said",
                 run + "--degrade tps", "conflict", expect="either",
                 check=lambda c, o: None if "qa" in o.text and "tps" in o.text else ("silent", "the clash is not said"))
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


# -- issue #25: what a user trusts cqdkit with ----------------------------------------------------------------------
#
# Seven kinds of cases, each area named ``trust-...`` (``--only trust-`` runs them all): a user's files overwritten
# or written through a planted link; stale results presented as new; box geometry at the image's edges and EXIF
# orientation; absurd sizes and numbers; config values of the wrong type; things that are not files (FIFOs, odd
# lock files); reports of broken runs and writers killed half-way.

USER_NOTE = "a user's own file: cqdkit did not write it\n"
ELSEWHERE = "elsewhere/mine.txt"  # the user's file a planted symlink points to

#: Short commands that write into ``{d}/%s`` (an output folder), for the tiny synthetic data.
RUN_B = "run {tiny} --no-report --degrade gray --method b --out {d}/%s"
RUN_ALL = "run {tiny} --no-report --degrade gray --out {d}/%s"
TABLE = "table {tiny} --no-report --degrade gray --out {d}/%s"
TUNE = "tune {tiny} --degrade gray --method cqd --seeds 1 --lambdas 1 --temperatures 10 --out {d}/%s"
COMPARE = "compare {tiny} --degrade gray --seeds 1 --loss softce --out {d}/%s"
MULTIRES = "multires {tiny} --degrade gray --out {d}/%s"
REPORT = "report {d}/run --examples 2 --quiet --out {d}/%s"
EXPLAIN = "explain {d}/run --images 4 --examples 2 --quiet --out {d}/%s"
CONVERT = "convert-weights {d}/net.mat --arch vggm --out {d}/w.safetensors"


def must(command: str) -> Callable[[Context], None]:
    """A setup step running a cqdkit command that has to succeed (else the case is a sweep error)."""

    def setup(c: Context) -> None:
        outcome = c.cqdkit(command)
        if outcome.rc != 0:
            raise RuntimeError(f"setup `{outcome.command}` failed: {outcome.tail(2)}")

    return setup


def user_file(relative: str) -> Callable[[Context], None]:
    """A setup that puts the user's own file at ``relative``: an image for .png/.jpg names, else text."""

    def setup(c: Context) -> None:
        path = c.d / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".png", ".jpg"):
            write_image(path, seed=7)
        else:
            path.write_text(USER_NOTE)

    return setup


def planted_link(link: str, target: str = ELSEWHERE, *, dangling: bool = False) -> Callable[[Context], None]:
    """A symlink at ``link`` (where cqdkit writes) to the user's file ``target`` (which does not exist when
    ``dangling``)."""

    def setup(c: Context) -> None:
        (c.d / target).parent.mkdir(parents=True, exist_ok=True)
        if not dangling:
            (c.d / target).write_text(USER_NOTE)
        (c.d / link).parent.mkdir(parents=True, exist_ok=True)
        (c.d / link).unlink(missing_ok=True)  # a copied run's own lock file
        (c.d / link).symlink_to(c.d / target)

    return setup


def link_kept(link: str, target: str = ELSEWHERE) -> Check:
    """The user's symlink must still be there, pointing where it pointed (not replaced by a file)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        path = c.d / link
        if not path.is_symlink() or Path(os.readlink(path)) != c.d / target:
            return "data lost", f"the user's symlink {link} -> {target} was replaced or removed"
        return None

    return check


def not_created(relative: str) -> Check:
    """Nothing may appear at ``relative`` (where a dangling symlink points)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if (c.d / relative).exists():
            return "silent", f"followed a planted symlink and created {relative} outside its folder"
        return None

    return check


def files_exist(*relatives: str) -> Check:
    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        missing = [r for r in relatives if not (c.d / r).is_file()]
        return ("silent", f"exit 0 but {missing} not written") if missing else None

    return check


def names_one_of(*names: str) -> Check:
    """A refusal must name at least one of ``names`` (the culprit may be named by its file or its line)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if outcome.rc != 2:
            return None
        line = (outcome.error_lines() or [outcome.tail(1)])[0]
        if not any(name.lower() in line.lower() for name in names):
            return "vague", f"names none of {list(names)}: {line}"
        return None

    return check


VOLATILE_KEYS = {"seconds", "wall_seconds", "environment", "root", "out", "started", "finished"}


def comparable(payload: Any) -> Any:
    """A result file without what changes from one identical run to the next (timings, paths)."""
    if isinstance(payload, dict):
        return {k: comparable(v) for k, v in payload.items() if k not in VOLATILE_KEYS}
    if isinstance(payload, list):
        return [comparable(v) for v in payload]
    return payload


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two JSON values first differ (``a.b[2]``), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}[{index}]")
            if found:
                return found
        return None
    if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        return None
    return f"{where or 'the whole file'}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"


def same_as_fresh(fresh: str, name: str, relative: str = "out", part: Callable[[Any], Any] = lambda p: p) -> Check:
    """Exit 0 must leave ``relative/name`` as a fresh command (``fresh``, into its own folder) writes it: what
    was reused must be what these settings would have trained. A clean refusal is fine too."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if outcome.rc != 0:
            return None
        reference = c.cqdkit(fresh)
        if reference.rc != 0:
            raise RuntimeError(f"the fresh reference `{reference.command}` failed: {reference.tail(2)}")
        reference_folder = Path(c.argv(fresh)[c.argv(fresh).index("--out") + 1])
        mine, theirs = (comparable(part(json.loads((folder / name).read_text().replace(str(folder), "OUT"))))
                        for folder in (c.d / relative, reference_folder))  # paths into the folder compare equal
        found = first_difference(mine, theirs)
        return ("silent", f"{name} differs from a fresh one with the same settings at {found}") if found else None

    return check


def unchanged_file(relative: str, copy: str) -> Check:
    """Exit 0 must leave ``relative`` (a result file) as ``copy`` holds it (saved by the setup)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        found = first_difference(comparable(load_json(c.d / relative)), comparable(load_json(c.d / copy)))
        return ("silent", f"{relative} changed at {found}") if found else None

    return check


def save_copy(relative: str, copy: str) -> Callable[[Context], None]:
    return lambda c: shutil.copy(c.d / relative, c.d / copy)


def one_value_per_seed(c: Context, outcome: Outcome) -> tuple[str, str] | None:
    """A table's every row holds one value per seed: a degradation given twice is not a second seed."""
    if outcome.rc != 0:
        return None
    table = load_json(c.d / "out" / "table.json")
    for degradation, rows in table["raw"].items():
        for row, values in rows.items():
            if len(values) != len(table["seeds"]):
                return "silent", (f"table.json {degradation} {row}: {len(values)} values for {len(table['seeds'])} "
                                  f"seed(s) (a repeated spec counted as another seed)")
    return None


#: A finished run with a fixed distillation strength, the start of the `--resume OPTION` cases.
FIXED_RUN = "run {tiny} --no-report --degrade gray --lambda 1 --temperature 4 --out {d}/run"


def finished_fixed_run(c: Context) -> None:
    """FIXED_RUN, with its models and config.json kept aside in ``before/`` for :func:`retrained`."""
    must(FIXED_RUN)(c)
    (c.d / "before").mkdir()
    for model in (c.d / "run").glob("*/model.safetensors"):
        shutil.copy(model, c.d / "before" / f"{model.parent.name}.safetensors")
    shutil.copy(c.d / "run" / "config.json", c.d / "before" / "config.json")


def retrained(model: str, option: str) -> Check:
    """``--resume OPTION`` of a finished run, exit 0: ``model`` must have been trained again with the new value;
    keeping the old weights under the new settings (or silently ignoring them) presents stale results."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if outcome.rc != 0:
            return None
        mine, before = c.d / "run" / model / "model.safetensors", c.d / "before" / f"{model}.safetensors"
        if mine.is_file() and mine.read_bytes() != before.read_bytes():
            return None
        claims = load_json(c.d / "run" / "config.json")["run"] != load_json(c.d / "before" / "config.json")["run"]
        return "silent", (f"exit 0, {model} not trained again, " + (
            "yet config.json now records the new settings" if claims else f"{option} ignored without a word"))

    return check


def vggm_network(c: Context) -> None:
    """``{d}/net.mat``: a MatConvNet vgg-m of the real shape with zero weights (made once per sweep; 400 KB
    compressed, 400 MB once converted, so the converted files are removed at the end of the case)."""
    shared = c.sweep.work / "shared" / "vggm.mat"
    if not shared.is_file():
        write_vggm_matconvnet(shared)
    shutil.copy(shared, c.d / "net.mat")
    c.cleanups.append(lambda: [p.unlink() for p in c.d.rglob("*") if p.is_file() and not p.is_symlink()
                               and p.stat().st_size > 10**7])


def write_vggm_matconvnet(path: Path, classes: int = 3) -> None:
    """imagenet-vgg-m.mat's layers (the 'old' MatConvNet layout) with zero weights."""

    def conv(name: str, size: int, cin: int, cout: int, stride: int = 1, pad: int = 0) -> dict[str, Any]:
        return {"name": name, "type": "conv", "filters": np.zeros((size, size, cin, cout), np.float32),
                "biases": np.zeros((1, cout), np.float32), "stride": np.array([[stride, stride]], float),
                "pad": np.full((1, 4), float(pad))}

    def pool(name: str, pad: tuple[int, ...]) -> dict[str, Any]:
        return {"name": name, "type": "pool", "method": "max", "pool": np.array([[3.0, 3.0]]),
                "stride": np.array([[2.0, 2.0]]), "pad": np.array([pad], float)}

    def plain(name: str, kind: str) -> dict[str, Any]:
        extra = {"param": np.array([[5, 2, 1e-4, 0.75]])} if kind == "normalize" else {}
        return {"name": name, "type": kind, **extra}

    layers = [conv("conv1", 7, 3, 96, stride=2), plain("relu1", "relu"), plain("norm1", "normalize"),
              pool("pool1", (0, 0, 0, 0)), conv("conv2", 5, 96, 256, stride=2, pad=1), plain("relu2", "relu"),
              plain("norm2", "normalize"), pool("pool2", (0, 1, 0, 1)), conv("conv3", 3, 256, 512, pad=1),
              plain("relu3", "relu"), conv("conv4", 3, 512, 512, pad=1), plain("relu4", "relu"),
              conv("conv5", 3, 512, 512, pad=1), plain("relu5", "relu"), pool("pool5", (0, 0, 0, 0)),
              conv("fc6", 6, 512, 4096), plain("relu6", "relu"), plain("drop6", "dropout"),
              conv("fc7", 1, 4096, 4096), plain("relu7", "relu"), plain("drop7", "dropout"),
              conv("fc8", 1, 4096, classes), plain("prob", "softmax")]
    cells = np.empty((1, len(layers)), dtype=object)
    for index, layer in enumerate(layers):
        cells[0, index] = layer
    names = np.empty((1, classes), dtype=object)
    names[0, :] = [f"class {k}" for k in range(classes)]
    normalization = {"averageImage": np.array([123.68, 116.779, 103.939], np.float32),
                     "imageSize": np.array([[224.0, 224.0, 3.0]]), "interpolation": "bilinear", "keepAspect": 1.0}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"layers": cells, "normalization": normalization, "classes": {"description": names}},
                     do_compression=True)


def overwrite_cases() -> Iterator[Case]:
    """1. Every writer refuses to replace a file cqdkit did not write, and follows no symlink it did not create."""
    area = "trust-overwrite"

    def kept(what: str, command: str, setup: Callable[[Context], Any], files: list[str], **kwargs: Any) -> Case:
        return Case(area, what, command, "either", setup=setup, guard=lambda c: [c.d / f for f in files], **kwargs)

    def linked(what: str, command: str, link: str, setup: Callable[[Context], Any] | None = None,
               **kwargs: Any) -> Case:
        return Case(area, what, command, "either", setup=steps(*filter(None, [setup, planted_link(link)])),
                    guard=lambda c: [c.d / ELSEWHERE], check=link_kept(link), **kwargs)

    def lock_linked(command: str, folder: str, setup: Callable[[Context], Any] | None = None, **kwargs: Any) -> Case:
        name = command.split()[0]
        return Case(area, f"{name}: {folder}/.cqdkit.lock is a symlink to the user's file", command, "either",
                    setup=steps(*filter(None, [setup, planted_link(f"{folder}/.cqdkit.lock")])),
                    guard=lambda c: [c.d / ELSEWHERE], **kwargs)

    bird = lambda c: write_image(c.d / "bird.png", 64, 48)  # noqa: E731
    degrade = "degrade gray {d}/bird.png --size 32 --out {d}/photos"
    for name in ("grid.png", "bird_x.png", "bird_z.png"):
        yield kept(f"degrade --out photos/ holding the user's {name}", degrade,
                   steps(bird, user_file(f"photos/{name}")), [f"photos/{name}"])
    for name in ("grid.png", "bird_z.png"):
        yield linked(f"degrade --out photos/ where {name} is the user's symlink", degrade, f"photos/{name}", bird)
    yield Case(area, "degrade twice into one --out (its own files replaced)", degrade, "ok",
               setup=steps(bird, must(degrade)), check=files_exist("photos/grid.png", "photos/bird_z.png"))

    report = REPORT % "site"
    for name in ("index.html", "curves.png", "per-class.png", "examples/x-00.png"):
        yield kept(f"report --out site/ holding the user's {name}", report, steps(copy_base, user_file(f"site/{name}")),
                   [f"site/{name}"])
    yield linked("report --out site/ where index.html is the user's symlink", report, "site/index.html", copy_base)
    yield Case(area, "report twice into one --out (its own page replaced)", report, "ok",
               setup=steps(copy_base, must(report)), check=files_exist("site/index.html"))

    explain = EXPLAIN % "site"
    for name in ("report.md", "report.json", "report.html", "saliency.png"):
        yield kept(f"explain --out site/ holding the user's {name}", explain,
                   steps(copy_base, user_file(f"site/{name}")), [f"site/{name}"])
    yield linked("explain --out site/ where report.md is the user's symlink", explain, "site/report.md", copy_base)

    for name in ("w.safetensors", "w.json"):
        yield kept(f"convert-weights --out over the user's {name}", CONVERT, steps(vggm_network, user_file(name)),
                   [name])
        yield linked(f"convert-weights --out where {name} is the user's symlink", CONVERT, name, vggm_network)
    yield Case(area, "convert-weights twice to one --out (its own files replaced)", CONVERT, "ok",
               setup=steps(vggm_network, must(CONVERT)), check=files_exist("w.safetensors", "w.json"))

    export = "export {d}/run --out {d}/student.onnx"
    yield linked("export --out student.onnx, the user's symlink", export, "student.onnx", copy_base)
    yield linked("export --out student.onnx whose student.onnx.json is the user's symlink", export,
                 "student.onnx.json", copy_base)
    yield linked("export into RUN_DIR/export/ where a-cqd.onnx is the user's symlink", "export {d}/run",
                 "run/export/a-cqd.onnx", copy_base)
    yield linked("sr-train --out sr.safetensors, the user's symlink", "sr-train {tiny_sr} --out {d}/sr.safetensors",
                 "sr.safetensors", trains=True)

    yield kept("a new run in a finished run's folder whose config.json was deleted", BASE_RUN + " --out {d}/run",
               steps(copy_base, lambda c: (c.d / "run" / "config.json").unlink()),
               ["run/results.json", "run/a/model.safetensors", "run/a-cqd/model.safetensors"], trains=True)
    yield kept("run --out a folder holding the user's own a/model.safetensors", RUN_ALL % "mine",
               lambda c: garbage(c.d / "mine" / "a" / "model.safetensors", 5000), ["mine/a/model.safetensors"],
               trains=True)
    yield kept("run --out a folder holding the user's own b/log.jsonl", RUN_B % "mine",
               user_file("mine/b/log.jsonl"), ["mine/b/log.jsonl"], trains=True)
    yield linked("run --out a folder whose results.json is the user's symlink", RUN_B % "mine", "mine/results.json",
                 trains=True)
    yield lock_linked(RUN_B % "out", "out", trains=True)

    yield kept("table --out a folder holding the user's table.md", TABLE % "mine", user_file("mine/table.md"),
               ["mine/table.md"], trains=True)
    yield kept("table --out a folder holding the user's table.csv", TABLE % "mine", user_file("mine/table.csv"),
               ["mine/table.csv"], trains=True)
    yield linked("table --out a folder whose table.md is the user's symlink", TABLE % "mine", "mine/table.md",
                 trains=True)
    yield lock_linked(TABLE % "out", "out", trains=True)
    yield kept("tune --out a folder holding the user's gray-cqd.png", TUNE % "mine", user_file("mine/gray-cqd.png"),
               ["mine/gray-cqd.png"], trains=True)
    yield lock_linked(TUNE % "out", "out", trains=True)
    for name in ("compare.md", "compare.png"):
        yield kept(f"compare --out a folder holding the user's {name}", COMPARE % "mine", user_file(f"mine/{name}"),
                   [f"mine/{name}"], trains=True)
    yield lock_linked(COMPARE % "out", "out", trains=True)
    for name in ("table3.md", "router.json", "router.safetensors"):
        yield kept(f"multires --out a folder holding the user's {name}", MULTIRES % "mine", user_file(f"mine/{name}"),
                   [f"mine/{name}"], trains=True)
    yield lock_linked(MULTIRES % "out", "out", trains=True)
    yield lock_linked(EXPLAIN % "site", "site", copy_base)
    yield lock_linked("report {d}/run --examples 0 --quiet", "run", copy_base)


#: Settings that determine a model, changed between two tables into one --out: (first, second).
TABLE_CHANGES = [
    ("--lr 0.01", "--lr 0.05"), ("", "--epochs 2"), ("", "--batch-size 4"), ("", "--weight-decay 0.01"),
    ("--lambda 1 --temperature 2", "--lambda 1 --temperature 4"), ("", "--image-size 24"), ("", "--student-seed 5"),
    ("", "--dataset-option train_per_class=6"), ("", "--no-crop"), ("", "--loss softce"),
]
#: The same for `run --resume` of a finished run: (option, the model it must retrain). ``--loss kl``: the run's
#: loss is softce (a strength was given), so ``--loss softce`` would change nothing.
RESUME_CHANGES = [
    ("--lambda 5", "a-cqd"), ("--temperature 2", "a-cqd"), ("--loss kl", "a-cqd"), ("--weight-decay 0.01", "a"),
    ("--batch-size 4", "a"), ("--image-size 24", "a"), ("--degrade tps", "a-cqd"),
    ("--dataset-option train_per_class=6", "a"), ("--seed 1", "a"), ("--no-crop", "a"),
]
#: Two different degradations whose folder names (slugs) are the same.
ALIASED_SPECS = [("tps:sigma=1.5", "tps:sigma=1_5"), ("tps:sigma=0.5", "tps:sigma=0_5"),
                 ("tps:sigma=2.0", "tps:sigma=2_0"), ("lowres:size=16+tps:sigma=2.5", "lowres:size=16+tps:sigma=2_5")]


def stale_cases() -> Iterator[Case]:
    """2. A model is reused only when everything that determines it matches; folder names are unambiguous."""
    area = "trust-stale"
    table = "table {tiny} --no-report --out {d}/%s"
    for first, second in TABLE_CHANGES:
        yield Case(area, f"table twice into one --out: {first or 'defaults'}, then {second}",
                   f"{TABLE % 'out'} {second}", "either", setup=must(f"{TABLE % 'out'} {first}"),
                   check=same_as_fresh(f"{TABLE % 'fresh'} {second}", "table.json"), trains=True)
    for option, model in RESUME_CHANGES:
        yield Case(area, f"run --resume {option} of a finished run (lambda 1, T 4)",
                   f"{FIXED_RUN} --resume {option}", "either", setup=finished_fixed_run, check=retrained(model, option),
                   trains=True)
    for first, second in ALIASED_SPECS:
        yield Case(area, f"table --degrade {first},{second} (different settings, one folder name)",
                   table % "out" + f" --degrade {first},{second}", "either", trains=True,
                   check=same_as_fresh(table % "fresh" + f" --degrade {second}", "table.json",
                                       part=lambda p, s=second: {k: p[k].get(s) for k in ("raw", "distillation")}))
    for first, second in ALIASED_SPECS[:2]:
        yield Case(area, f"table --degrade {first}, then {second} into the same --out",
                   table % "out" + f" --degrade {second}", "either", setup=must(table % "out" + f" --degrade {first}"),
                   trains=True, check=same_as_fresh(table % "fresh" + f" --degrade {second}", "table.json"))
    for specs in ("gray,gray", "tps,tps", "gray,tps,gray", "tps,tps:sigma=4"):
        yield Case(area, f"table --degrade {specs} (a spec twice is not a second seed)",
                   table % "out" + f" --degrade {specs}", "either", check=one_value_per_seed, trains=True)
    yield Case(area, "table --degrade gray,gray --seeds 2", table % "out" + " --degrade gray,gray --seeds 2", "either",
               check=one_value_per_seed, trains=True)
    yield Case(area, "tune twice into one --out: --lr 0.01, then --lr 0.05", TUNE % "out" + " --lr 0.05", "either",
               setup=must(TUNE % "out" + " --lr 0.01"), check=same_as_fresh(TUNE % "fresh" + " --lr 0.05", "tune.json"),
               trains=True)
    yield Case(area, "compare twice into one --out: defaults, then --lr 0.05", COMPARE % "out" + " --lr 0.05",
               "either", setup=must(COMPARE % "out"),
               check=same_as_fresh(COMPARE % "fresh" + " --lr 0.05", "compare.json"), trains=True)
    yield Case(area, "multires twice into one --out: defaults, then --lr 0.05", MULTIRES % "out" + " --lr 0.05",
               "either", setup=must(MULTIRES % "out"),
               check=same_as_fresh(MULTIRES % "fresh" + " --lr 0.05", "table3.json"), trains=True)
    yield Case(area, "table twice with the same settings: everything reused, the same table", TABLE % "out", "ok",
               setup=steps(must(TABLE % "out"), save_copy("out/table.json", "first.json")),
               check=unchanged_file("out/table.json", "first.json"), trains=True)
    yield Case(area, "table --seeds 1, then --seeds 2 into one --out (seed 0 reused, rightly)",
               TABLE % "out" + " --seeds 2", "ok", setup=must(TABLE % "out"),
               check=same_as_fresh(TABLE % "fresh" + " --seeds 2", "table.json"), trains=True)


def quadrants(width: int = 64, height: int = 48) -> np.ndarray:
    """An image of four flat colours, one per quadrant: any rotation or mirror of it is easy to tell apart."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:] = (230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30)
    return image


def exif_jpeg(path: Path, orientation: int, width: int = 64, height: int = 48) -> Path:
    """A JPEG stored ``width x height`` whose EXIF Orientation tag (0x0112) says how a viewer turns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(quadrants(width, height)).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def shown_as_viewer(written: str, source: str, size: int = 32, box: tuple[int, int, int, int] | None = None) -> Check:
    """The x that `degrade` wrote must be the image as a viewer shows it (EXIF orientation applied), not as
    stored: compare it with both, each cropped to ``box`` (in the shown frame) and resized."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        from PIL import ImageOps

        stored = Image.open(c.d / source).convert("RGB")
        shown = ImageOps.exif_transpose(Image.open(c.d / source)).convert("RGB")

        def looks(image: Image.Image) -> np.ndarray:
            if box:
                x, y, w, h = box
                image = image.crop((x, y, min(x + w, image.width), min(y + h, image.height)))
            return np.asarray(image.resize((size, size), Image.BILINEAR), np.float32)

        path = c.d / written
        if not path.is_file():
            return "silent", f"exit 0 but no {written}"
        mine = np.asarray(Image.open(path).convert("RGB").resize((size, size)), np.float32)
        to_shown, to_stored = (float(np.abs(mine - looks(i)).mean()) for i in (shown, stored))
        if to_stored < to_shown:
            return "silent", (f"{written} is the image as stored, not as a viewer shows it (EXIF orientation "
                              f"ignored; mean difference {to_stored:.0f} vs {to_shown:.0f})")
        return None

    return check


def folder_boxes(c: Context, changes: dict[str, str] | None = None, extra: list[str] = ()) -> Path:
    """The image folder with a bboxes.csv line for every image (box 2,3,20,15), some lines replaced, some added."""
    root = folder(c)
    changes = changes or {}
    lines = ["path,x,y,width,height"]
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".png", ".jpg")):
        relative = path.relative_to(root).as_posix()
        lines.append(f"{relative},{changes.get(relative, '2,3,20,15')}")
    (root / "bboxes.csv").write_text("\n".join([*lines, *extra]) + "\n")
    return root


def exif_in_folder(orientation: int, box: str) -> Callable[[Context], None]:
    """train/cat/0.jpg becomes a 64x48 JPEG shown turned (``orientation``), with ``box`` in bboxes.csv."""

    def setup(c: Context) -> None:
        exif_jpeg(folder(c) / "train" / "cat" / "0.jpg", orientation)
        folder_boxes(c, {"train/cat/0.jpg": box})

    return setup


def exif_in_cub(orientation: int, box: str) -> Callable[[Context], None]:
    """CUB's image 1 becomes a 64x48 JPEG shown turned, with ``box`` (x y w h) in bounding_boxes.txt."""

    def setup(c: Context) -> None:
        root = cub(c)
        exif_jpeg(root / "images" / "001.Class_1" / "img_0.jpg", orientation)
        rewrite_line(root / "images.txt", 1, "1 001.Class_1/img_0.jpg")
        rewrite_line(root / "bounding_boxes.txt", 1, f"1 {box}")

    return setup


def cars_box(x1: int, y1: int, x2: int, y2: int, form: str = "devkit") -> Callable[[Context], None]:
    """Stanford Cars whose first training annotation has these (1-based, inclusive) corners; 40x30 images."""
    box = {"bbox_x1": np.uint16(x1), "bbox_y1": np.uint16(y1), "bbox_x2": np.uint16(x2), "bbox_y2": np.uint16(y2)}
    return lambda c: cars(c, form=form, train=8, test=4, edit=lambda rows: rows[0].update(box))


def cars_duplicate(same_box: bool) -> Callable[[Context], None]:
    """Stanford Cars listing its first training image twice, with the same box or another one."""

    def edit(rows: list[dict[str, Any]]) -> None:
        twin = dict(rows[0])
        if not same_box:
            twin.update({"bbox_x1": np.uint16(10), "bbox_x2": np.uint16(30)})
        rows.append(twin)

    return lambda c: cars(c, edit=edit)


def geometry_cases() -> Iterator[Case]:
    """3. Boxes on the image's edges and EXIF-rotated images: one rule, applied everywhere, or one line."""
    area = "trust-geometry"
    run = "run {disk} --no-report --degrade gray --dataset %s --root {d}/%s --out {d}/out"
    cub_run, folder_run, cars_run = run % ("cub", "cub"), run % ("folder", "folder"), run % ("cars", "cars")
    cub_names = names_one_of("img_0.png", "bounding_boxes.txt", "image id 1")
    for what, line in [("x = width (40), width 1", "1 40 3 1 5"), ("y = height (30), height 1", "1 2 30 5 1"),
                       ("x = 40.5, width 0.5 (starts past the edge)", "1 40.5 3 0.5 5"),
                       ("at the bottom-right corner (40, 30, 1, 1)", "1 40 30 1 1")]:
        yield Case(area, f"run on CUB: a box {what}", cub_run, "error", setup=lambda c, t=line: damage(
            cub(c) / "bounding_boxes.txt", 1, t), check=cub_names, trains=True, lazy=True)
    edge = lambda c: damage(cub(c) / "bounding_boxes.txt", 1, "1 40 3 1 5")  # noqa: E731
    yield Case(area, "inspect cub --deep: a box at x = width", "inspect --dataset cub --root {d}/cub --deep", "error",
               setup=edge, check=cub_names)
    yield Case(area, "inspect cub --skip-bad --json: a box at x = width is listed, the rest kept",
               "inspect --dataset cub --root {d}/cub --skip-bad --json", "ok", setup=edge,
               check=json_output(lambda p: None if len(p["problems"]) == 1 and p["train"] + p["val"] + p["test"] == 17
                                 else f"problems {p['problems']}, sizes {p['train']}+{p['val']}+{p['test']}"))
    yield Case(area, "run on CUB --skip-bad: a box at x = width is skipped and listed", cub_run + " --skip-bad", "ok",
               setup=edge, trains=True, check=skipped_listed("out", "img_0.png", count=1))
    yield Case(area, "inspect cub: the same box twice for image 1 (identical lines)",
               "inspect --dataset cub --root {d}/cub", "either", setup=lambda c: append_line(
                   cub(c) / "bounding_boxes.txt", "1 2.0 3.0 20.0 15.0"), check=names_one_of("bounding_boxes.txt"))

    folder_names = names_one_of("0.jpg", "bboxes.csv")
    for what, changes in [("x = width on a JPEG", {"train/cat/0.jpg": "40,3,1,5"}),
                          ("y = height on a PNG", {"train/cat/1.png": "2,30,5,1"}),
                          ("at the corner (40, 30, 1, 1)", {"train/dog/0.jpg": "40,30,1,1"})]:
        yield Case(area, f"run on an image folder: a box {what}", folder_run, "error",
                   setup=lambda c, ch=changes: folder_boxes(c, ch), check=names_one_of("bboxes.csv", *(
                       Path(p).name for p in changes)), trains=True, lazy=True)
    yield Case(area, "inspect folder --deep: a box at x = width", "inspect --dataset folder --root {d}/folder --deep",
               "error", setup=lambda c: folder_boxes(c, {"train/cat/0.jpg": "40,3,1,5"}), check=folder_names)
    yield Case(area, "inspect folder: two different boxes for one image in bboxes.csv",
               "inspect --dataset folder --root {d}/folder", "error", names=("bboxes.csv",),
               setup=lambda c: folder_boxes(c, extra=["train/cat/0.jpg,5,5,10,10"]))
    yield Case(area, "inspect folder: the same box twice for one image in bboxes.csv",
               "inspect --dataset folder --root {d}/folder", "either",
               setup=lambda c: folder_boxes(c, extra=["train/cat/0.jpg,2,3,20,15"]), check=folder_names)
    for value in ("nan", "inf", "1e400", "-0.5"):
        yield Case(area, f"inspect folder: a box with x = {value}", "inspect --dataset folder --root {d}/folder", "error",
                   names=("bboxes.csv",), setup=lambda c, v=value: folder_boxes(c, {"train/cat/0.jpg": f"{v},3,5,5"}))

    cars_names = names_one_of("cars_train_00000.jpg", "annotation 1", "cars_train_annos.mat")
    yield Case(area, "run on Stanford Cars: a box at x = width (x1 = x2 = 41, 1-based)", cars_run, "error",
               setup=cars_box(41, 4, 41, 18), check=cars_names, trains=True, lazy=True)
    yield Case(area, "run on Stanford Cars: a box at y = height (y1 = y2 = 31)", cars_run, "error",
               setup=cars_box(3, 31, 22, 31), check=cars_names, trains=True, lazy=True)
    yield Case(area, "run on Stanford Cars (combined form): a box at x = width", cars_run, "error",
               setup=cars_box(41, 1, 41, 30, form="combined"), check=names_one_of("000001.jpg", "annotation 1"),
               trains=True, lazy=True)
    yield Case(area, "inspect cars: one image listed twice with different boxes", "inspect --dataset cars --root {d}/cars",
               "error", names=("cars_train_00000.jpg",), setup=cars_duplicate(same_box=False))
    yield Case(area, "inspect cars: one image listed twice with the same box", "inspect --dataset cars --root {d}/cars",
               "either", setup=cars_duplicate(same_box=True), check=names_one_of("cars_train_00000.jpg"))

    bird = lambda c: write_image(c.d / "bird.png", 64, 48)  # noqa: E731
    for bbox, expect in [("64,0,1,10", "error"), ("0,48,10,1", "error"), ("64.5,0,0.5,10", "error"),
                         ("63.5,0,0.5,10", "ok"), ("0,0,64,48", "ok")]:
        yield Case(area, f"degrade --bbox {bbox} --crop on a 64x48 image", f"degrade gray {{d}}/bird.png --bbox {bbox} "
                   "--crop --size 32 --out {d}/look", expect, names=("box",) if expect == "error" else (), setup=bird)

    for orientation in range(1, 9):
        yield Case(area, f"degrade a JPEG with EXIF orientation {orientation}: x as a viewer shows it",
                   "degrade gray {d}/turned.jpg --size 32 --out {d}/look", "ok",
                   setup=lambda c, o=orientation: exif_jpeg(c.d / "turned.jpg", o),
                   check=shown_as_viewer("look/turned_x.png", "turned.jpg"))
    yield Case(area, "degrade --bbox --crop on an EXIF-rotated JPEG: the box is in the shown frame",
               "degrade gray {d}/turned.jpg --bbox 2,40,20,20 --crop --size 32 --out {d}/look", "ok",
               setup=lambda c: exif_jpeg(c.d / "turned.jpg", 6),
               check=shown_as_viewer("look/turned_x.png", "turned.jpg", box=(2, 40, 20, 20)))
    for orientation in (6, 8):
        yield Case(area, f"inspect folder --deep: EXIF orientation {orientation}, a box that fits the shown 48x64 image",
                   "inspect --dataset folder --root {d}/folder --deep", "ok", setup=exif_in_folder(orientation, "2,40,10,20"))
    yield Case(area, "inspect folder --deep: EXIF orientation 6, a box that fits only the stored 64x48 image",
               "inspect --dataset folder --root {d}/folder --deep", "error", setup=exif_in_folder(6, "40,2,20,10"),
               check=folder_names)
    yield Case(area, "inspect cub --deep: EXIF orientation 6, a box that fits the shown 48x64 image",
               "inspect --dataset cub --root {d}/cub --deep", "ok", setup=exif_in_cub(6, "2 40 10 20"))
    yield Case(area, "run on an image folder with an EXIF-rotated JPEG and its box in the shown frame", folder_run,
               "ok", setup=exif_in_folder(6, "2,40,10,20"), trains=True, check=finite_results())


def model_json_edit(**changes: Any) -> Callable[[Context], None]:
    """The base run copied, with its student's model.json changed."""
    return lambda c: edit_json(copy_base(c) / "a-cqd" / "model.json", **changes)


def size_cases() -> Iterator[Case]:
    """4. Absurd sizes and numbers: refused before anything is allocated, with the limit named."""
    area = "trust-sizes"
    limits = {"memory_gb": 4, "timeout": 45}
    for option, value in [("--image-size", "100000"), ("--image-size", str(2**31)), ("--image-size", str(10**30)),
                          ("--batch-size", str(2**63)), ("--batch-size", str(10**30)), ("--epochs", str(2**63)),
                          ("--workers", str(2**40)), ("--temperature", "1e308"), ("--lambda", "1e308"),
                          ("--student-seed", str(2**64))]:
        yield run_error(area, f"run {option} {value}", f"{option} {value}", (option,), **limits)
    for key, value in [("seed", "-1"), ("classes", str(10**9)), ("train_per_class", str(10**9)),
                       ("test_per_class", str(10**12)), ("image_size", "100000"), ("image_size", str(2**40))]:
        yield run_error(area, f"run --dataset-option {key}={value}", f"--dataset-option {key}={value}", (key,), **limits)
    bird = lambda c: write_image(c.d / "bird.png", 64, 48)  # noqa: E731
    for spec_or_option, names in [("gray --size 200000", ("--size",)), (f"gray --size {2**40}", ("--size",)),
                                  ("tps:sigma=1e308", ("sigma",)), ("tps:sigma=1e300", ("sigma",)),
                                  (f"tps:grid={2**40}", ("grid",)), (f"lowres:size={2**63}", ("size",)),
                                  (f"blur:severity={2**63}", ("severity",))]:
        yield Case(area, f"degrade {spec_or_option}", f"degrade {spec_or_option} {{d}}/bird.png --out {{d}}/look",
                   "error", names=names, setup=bird, **limits)
    for command in ("table", "tune", "compare"):
        for seeds in (str(10**30), str(2**63)):
            yield Case(area, f"{command} --seeds {seeds}", f"{command} {{tiny}} --degrade gray --seeds {seeds} --out {{d}}/out",
                       "error", names=("--seeds",), **limits)
    yield Case(area, "tune --temperatures 1e308", "tune {tiny} --degrade gray --method cqd --seeds 1 --lambdas 1 "
               "--temperatures 1e308 --out {d}/out", "error", names=("--temperatures",), **limits)
    yield Case(area, "tune --lambdas 1e308", "tune {tiny} --degrade gray --method cqd --seeds 1 --lambdas 1e308 "
               "--temperatures 4 --out {d}/out", "error", names=("--lambdas",), **limits)
    sr = "sr-train {tiny_sr} --out {d}/sr.safetensors "
    for option, value, names in [("--size", str(10**6), "--size"), ("--image-size", "100000", "--image-size"),
                                 ("--batch-size", str(2**63), "--batch-size")]:
        yield Case(area, f"sr-train {option} {value}", sr + f"{option} {value}", "error", names=(names,), **limits)
    for value in (100000, 0, -32):
        for command in ("export {d}/run --out {d}/x.onnx", "report {d}/run --examples 2 --quiet",
                        "explain {d}/run --images 4 --examples 2 --quiet"):
            if value == -32 and not command.startswith("export"):
                continue
            # export's input shape is the model's image_size; report and explain may take the run's instead
            expect = "error" if command.startswith("export") else "either"
            yield Case(area, f"{command.split()[0]}: the student's model.json has image_size {value}", command, expect,
                       names=("model.json",), setup=model_json_edit(image_size=value), **limits)


def tiny_config(form: str, changes: dict[str, str]) -> str:
    """The tiny settings as a TOML, YAML or JSON config file, with some values replaced by raw text of that
    format (``"1.9"``, ``".inf"``, ``"null"``)."""
    if form == "toml":
        return tiny_toml(changes)
    import tomllib

    values = {key: json.dumps(value) for key, value in tomllib.loads(tiny_toml({})).items()} | changes
    if form == "yaml":
        return "".join(f"{key}: {value}\n" for key, value in values.items())
    return "{" + ", ".join(f'"{key}": {value}' for key, value in values.items()) + "}\n"


#: A value of the wrong type for a key of the config file: (format, key, raw value).
WRONG_TYPES = [
    ("toml", "epochs", "1.9"), ("toml", "epochs", "true"), ("toml", "epochs", "inf"), ("toml", "epochs", "1e400"),
    ("toml", "epochs", "2024-01-01"), ("toml", "lr", "{a = 1}"), ("toml", "lr", "true"), ("toml", "batch-size", "8.5"),
    ("toml", "batch-size", "true"), ("toml", "image-size", "[32]"), ("toml", "seed", "1.5"), ("toml", "workers", "0.5"),
    ("toml", "weight-decay", "inf"), ("toml", "temperature", "true"), ("toml", "teacher", "5"), ("toml", "amp", "1"),
    ("toml", "cache_teacher", "1"), ("toml", "feature_cache_gb", "[8]"), ("toml", "dataset-option", "{classes = 3.5}"),
    ("toml", "dataset-option", "{classes = true}"),
    ("yaml", "epochs", "1.9"), ("yaml", "epochs", "yes"), ("yaml", "degrade", "null"), ("yaml", "degrade", "~"),
    ("yaml", "lr", ".inf"), ("yaml", "batch-size", "{a: 1}"),
    ("json", "epochs", "1.9"), ("json", "degrade", "null"), ("json", "lr", "NaN"), ("json", "epochs", "1e400"),
    ("json", "batch-size", "[8]"),
]


def names_key(key: str) -> Check:
    """A refusal must name the config key, spelt as the option or as the setting."""
    spellings = {key, key.replace("-", "_"), key.replace("_", "-"),
                 {"lambda": "lam", "dataset-option": "classes"}.get(key, key)}
    return names_one_of(*sorted(spellings))


def config_type_cases() -> Iterator[Case]:
    """5. Every value of a config file is type-checked (through RunConfig), each refusal naming its key."""
    area = "trust-config"

    def config(what: str, name: str, content: str | bytes, expect: str = "error", names: tuple[str, ...] = (),
               command: str = "run --config {d}/{name} --out {d}/out", **kwargs: Any) -> Case:
        return Case(area, what, command.replace("{name}", name), expect, names=names, setup=text_file(name, content),
                    **kwargs)

    for form, key, value in WRONG_TYPES:
        yield config(f"--config ({form.upper()}) with {key} = {value}", f"c.{form}", tiny_config(form, {key: value}),
                     check=names_key(key))
    yield config("--config (TOML) with epochs = \"1\" (a number as a string)", "c.toml", tiny_config("toml", {"epochs": '"1"'}),
                 "either", check=finite_or_stopped())
    bom = names_one_of("byte-order mark", "BOM")
    for form in ("toml", "yaml", "json"):
        yield config(f"--config ({form.upper()}) starting with a UTF-8 byte-order mark", f"c.{form}",
                     b"\xef\xbb\xbf" + tiny_config(form, {}).encode(), "either", check=all_of(bom, finite_or_stopped()),
                     trains=True)
        yield config(f"--config ({form.upper()}) with Windows line endings", f"c.{form}",
                     tiny_config(form, {}).replace("\n", "\r\n").encode(), "ok", check=finite_results(), trains=True)
    for key, value in [("epochs", "1.9"), ("lr", "inf"), ("degrade", '"tsp"'), ("image-size", "100000"),
                       ("seed", "true")]:
        yield config(f"--print-config of a file with {key} = {value} (must not print settings a run refuses)", "c.toml",
                     tiny_config("toml", {key: value}), check=names_key(key), command="run --config {d}/{name} --print-config")
    for option in ("--epochs 0", "--degrade tsp"):
        yield Case(area, f"run {option} --print-config", f"run {{tiny}} {option} --print-config", "error",
                   names=(option.split()[0],))
    yield config("table --config with seeds = 1.5", "c.toml", "seeds = 1.5\n", names=("seeds",),
                 command="table {tiny} --no-report --degrade gray --config {d}/{name} --out {d}/out")
    yield config("compare --config with seeds = true", "c.toml", "seeds = true\n", names=("seeds",),
                 command="compare {tiny} --degrade gray --loss softce --config {d}/{name} --out {d}/out")
    yield config("tune --config with temperatures = [1, \"a\"]", "c.toml", 'temperatures = [1, "a"]\n',
                 names=("temperatures",), command="tune {tiny} --degrade gray --method cqd --seeds 1 --config {d}/{name} "
                 "--out {d}/out")
    yield config("tune --config with lambdas = true", "c.toml", "lambdas = true\n", names=("lambdas",),
                 command="tune {tiny} --degrade gray --method cqd --seeds 1 --config {d}/{name} --out {d}/out")


def fifo(relative: str) -> Callable[[Context], None]:
    """A setup making ``relative`` a FIFO (replacing the file there, if any): reading it waits forever."""

    def setup(c: Context) -> None:
        path = c.d / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            path.unlink()
        os.mkfifo(path)

    return setup


def immutable_file(relative: str) -> Callable[[Context], None]:
    """A setup making the file ``relative`` immutable (``chattr +i``; undone at the end of the case)."""

    def setup(c: Context) -> None:
        path = c.d / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            raise RuntimeError("chattr +i is not available here")
        c.cleanups.append(lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True))

    return setup


def unfinished_student(c: Context) -> None:
    """The base run copied, as if killed while its student trained: no student model, no results."""
    run = copy_base(c)
    for name in ("model.safetensors", "model.json"):
        (run / "a-cqd" / name).unlink()
    (run / "results.json").unlink()


def nonfile_cases() -> Iterator[Case]:
    """6. A FIFO, a device or a folder where a file is read: one line naming it, at once (never a hang)."""
    area = "trust-nonfile"
    fast = {"timeout": 30}
    bird = lambda c: write_image(c.d / "bird.png", 64, 48)  # noqa: E731

    def piped(what: str, command: str, pipe: str, setup: Callable[[Context], Any] | None = None,
              expect: str = "error", **kwargs: Any) -> Case:
        return Case(area, what, command, expect, names=(Path(pipe).name,),
                    setup=steps(*filter(None, [setup, fifo(pipe)])), **{**fast, **kwargs})

    yield piped("degrade a FIFO named .png", "degrade gray {d}/pipe.png --out {d}/look", "pipe.png")
    yield piped("degrade a good image and a FIFO", "degrade gray {d}/bird.png {d}/pipe.jpg --out {d}/look", "pipe.jpg",
                bird)
    for suffix in ("toml", "yaml", "json"):
        yield piped(f"run --config a FIFO (.{suffix})", f"run {{tiny}} --config {{d}}/pipe.{suffix} --out {{d}}/out",
                    f"pipe.{suffix}")
    yield piped("run --teacher-weights a FIFO", "run {tiny} --no-report --teacher-weights {d}/pipe.safetensors --out {d}/out",
                "pipe.safetensors")
    yield piped("run --student-weights a FIFO (.pth)", "run {tiny} --no-report --method cqd --student-weights "
                "{d}/pipe.pth --out {d}/out", "pipe.pth")
    yield piped("run --tuned a FIFO", "run {tiny} --no-report --tuned {d}/tune.json --out {d}/out", "tune.json")
    yield piped("table --tuned a FIFO", "table {tiny} --no-report --degrade gray --tuned {d}/tune.json --out {d}/out",
                "tune.json")
    yield piped("convert-weights a FIFO", CONVERT.replace("net.mat", "pipe.mat"), "pipe.mat")
    yield piped("degrade lowres with srcnn weights= a FIFO",
                "degrade lowres:size=16,upsample=srcnn,weights={d}/pipe.safetensors {d}/bird.png --out {d}/look",
                "pipe.safetensors", bird)
    cub_files = "cub/CUB_200_2011"
    for name in ("images.txt", "bounding_boxes.txt", "classes.txt"):
        yield piped(f"inspect cub: {name} is a FIFO", "inspect --dataset cub --root {d}/cub", f"{cub_files}/{name}", cub)
    yield piped("inspect cub --deep: an image is a FIFO", "inspect --dataset cub --root {d}/cub --deep",
                f"{cub_files}/images/001.Class_1/img_0.png", cub)
    yield piped("run on CUB: an image is a FIFO", "run {disk} --no-report --degrade gray --dataset cub --root {d}/cub "
                "--out {d}/out", f"{cub_files}/images/001.Class_1/img_0.png", cub, timeout=60)
    yield piped("inspect folder: bboxes.csv is a FIFO", "inspect --dataset folder --root {d}/folder", "folder/bboxes.csv",
                folder)
    # A FIFO among the images may be ignored like any file that is not an image (but never waited on)
    yield piped("inspect folder --deep: a FIFO named like an image", "inspect --dataset folder --root {d}/folder --deep",
                "folder/train/cat/pipe.png", folder, expect="either")
    yield piped("inspect cars: cars_meta.mat is a FIFO", "inspect --dataset cars --root {d}/cars",
                "cars/devkit/cars_meta.mat", cars)
    yield piped("run --unlabeled a folder holding a FIFO named like an image", "run {tiny} --no-report --no-crop --unlabeled "
                "{d}/extra --out {d}/out", "extra/pipe.png", lambda c: write_image(c.d / "extra" / "a.png"), timeout=60,
                expect="either")
    yield piped("export: the student's model.json is a FIFO", "export {d}/run --out {d}/x.onnx", "run/a-cqd/model.json",
                copy_base)
    yield piped("report: results.json is a FIFO", "report {d}/run --examples 0 --quiet", "run/results.json", copy_base)
    yield piped("report: a model's log.jsonl is a FIFO", "report {d}/run --examples 0 --quiet", "run/b/log.jsonl",
                copy_base)
    yield piped("explain: config.json is a FIFO", "explain {d}/run --images 4 --quiet", "run/config.json", copy_base)
    # an unreadable checkpoint pointer may be refused, or the student trained again from the start
    yield piped("run --resume: the unfinished student's latest.json is a FIFO", f"{BASE_RUN} --resume --out {{d}}/run",
                "run/a-cqd/latest.json", unfinished_student, expect="either", trains=True)
    yield piped("report: a table's table.json is a FIFO", "report {d}/out --quiet", "out/table.json",
                must(TABLE % "out"))
    yield Case(area, "degrade /dev/zero as an image (endless)", "degrade gray /dev/zero --out {d}/look", "error",
               names=("/dev/zero",), memory_gb=4, **fast)

    lock_dir = lambda where: steps(lambda c: (c.d / where / ".cqdkit.lock").unlink(missing_ok=True),  # noqa: E731
                                   lambda c: (c.d / where / ".cqdkit.lock").mkdir(parents=True))
    for command, where, setup in [(RUN_B % "out", "out", None), (TABLE % "out", "out", None),
                                   (EXPLAIN % "site", "run", copy_base), ("report {d}/run --examples 0", "run", copy_base)]:
        yield Case(area, f"{command.split()[0]}: {where}/.cqdkit.lock is a folder", command, "error",
                   names=(".cqdkit.lock",), setup=steps(*filter(None, [setup, lock_dir(where)])), **fast)
    for command in (RUN_B % "out", TUNE % "out", MULTIRES % "out"):
        yield piped(f"{command.split()[0]}: out/.cqdkit.lock is a FIFO", command, "out/.cqdkit.lock")
    for command, where, setup in [(RUN_B % "out", "out", None), (COMPARE % "out", "out", None),
                                   ("report {d}/run --examples 0", "run", copy_base)]:
        yield Case(area, f"{command.split()[0]}: {where}/.cqdkit.lock is immutable (chattr +i)", command, "error",
                   names=(".cqdkit.lock",), setup=steps(*filter(None, [setup, immutable_file(f"{where}/.cqdkit.lock")])),
                   **fast)
    for command in (RUN_B % "out", MULTIRES % "out"):
        yield Case(area, f"{command.split()[0]}: out/.cqdkit.lock is a dangling symlink to a file elsewhere", command,
                   "either", setup=planted_link("out/.cqdkit.lock", dangling=True), check=not_created(ELSEWHERE),
                   trains=True, **fast)


def changed_json(relative: str, change: Callable[[Any], Any], base: Callable[[Context], Any] = copy_base) -> Callable[[Context], None]:
    """A setup: ``base`` (the base run copied), then the JSON file ``relative`` replaced by ``change(payload)``
    (or changed in place when ``change`` returns None)."""

    def setup(c: Context) -> None:
        base(c)
        path = c.d / relative
        payload = load_json(path)
        changed = change(payload)
        path.write_text(json.dumps(payload if changed is None else changed))

    return setup


def student_score(key: str, value: Any) -> Callable[[Any], None]:
    return lambda results: results["models"]["a-cqd"].update({key: value})


def words_for_numbers(table: dict[str, Any]) -> None:
    """Every value of a table.json's raw rows replaced by a word."""
    for rows in table["raw"].values():
        for row, values in rows.items():
            rows[row] = ["high"] * len(values)


def tuned_something(*methods: str) -> Check:
    """Exit 0 from tune: every method asked for is in tune.json, each with a distilled cell (lambda > 0)."""

    def check(c: Context, outcome: Outcome) -> tuple[str, str] | None:
        if outcome.rc != 0:
            return None
        found = load_json(c.d / "out" / "tune.json").get("methods") or {}
        for method in methods:
            if method not in found:
                return "silent", f"tune.json has no {method} (asked for), only {sorted(found)}"
            for degradation, result in found[method].items():
                if not any(cell.get("lam") for cell in result.get("grid") or []):
                    return "silent", f"tune.json {method}/{degradation}: no distilled cell tuned"
        return None

    return check


def killed_while_writing(command: str) -> Callable[[Context], Outcome]:
    """``command`` killed with -9 as soon as one of its temporary files appears, then the same command again:
    it must succeed, and no temporary may be left behind (checked with ``nothing_left``)."""

    def flow(c: Context) -> Outcome:
        process = c.popen(command)
        caught = None
        while process.poll() is None and caught is None:
            caught = next((p for p in c.d.rglob(f".*{TEMPORARY_SUFFIX}")), None)
            time.sleep(0.005)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        again = c.cqdkit(command)
        moment = f"while it wrote {caught.relative_to(c.d)}" if caught else "(it finished before a temporary was seen)"
        again.command = f"{c.sweep.show(c.argv(command))}, killed -9 {moment}; then the same again"
        return again

    return flow


def broken_cases() -> Iterator[Case]:
    """7. Reports, exports and tunes of broken runs: one line naming the broken file, never a page of nonsense."""
    area = "trust-broken"
    report = "report {d}/run --examples 0 --quiet"
    for what, change in [
        ("the student's test_z is a string", student_score("test_z", "high")),
        ("the student's test_z is null", student_score("test_z", None)),
        ("the student's test_x is NaN", student_score("test_x", float("nan"))),
        ("the student's test_z is 1.7", student_score("test_z", 1.7)),
        ("'models' is empty", lambda r: r.update(models={})),
        ("'method' names a model it does not list", lambda r: r.update(method="cqd")),
        ("a model's scores are a list", lambda r: r["models"].update(b=[0.5, 0.5])),
        ("it is a JSON list", lambda r: [r]),
    ]:
        yield Case(area, f"report on a run whose results.json: {what}", report, "error", names=("results.json",),
                   setup=changed_json("run/results.json", change))
    yield Case(area, "report on a run whose config.json has no 'run'", report, "error", names=("config.json",),
               setup=changed_json("run/config.json", lambda p: {k: v for k, v in p.items() if k != "run"}))
    yield Case(area, "report on a run whose B folder is gone (its scores are in results.json; curves left out)",
               report, "either",
               setup=lambda c: shutil.rmtree(copy_base(c) / "b"))
    yield Case(area, "report on a run whose B log.jsonl is empty", report, "either",
               setup=lambda c: (copy_base(c) / "b" / "log.jsonl").write_text(""))
    for what, change in [
        ("raw values are strings", words_for_numbers),
        ("'degradations' is empty", lambda t: t.update(degradations=[])),
        ("'seeds' is empty", lambda t: t.update(seeds=[])),
        ("raw lacks a listed degradation", lambda t: t.update(degradations=["gray", "tps"])),
    ]:
        yield Case(area, f"report on a table whose table.json: {what}", "report {d}/tab --quiet", "error",
                   names=("table.json",), setup=changed_json("tab/table.json", change, base=must(TABLE % "tab")),
                   trains=True)

    export = "export {d}/run --out {d}/x.onnx"
    for what, changes in [("lists 1 class name for 3 classes", {"classes": ["only one"]}), ("lists no class", {"classes": []}),
                          ("num_classes 0", {"num_classes": 0}), ("num_classes '3' (a string)", {"num_classes": "3"}),
                          ("a mean of 2 values", {"mean": [0.5, 0.5]}), ("a std of 0", {"std": [0.2, 0.0, 0.2]}),
                          ("architecture null", {"architecture": None}), ("in_chans 0", {"in_chans": 0})]:
        yield Case(area, f"export a run whose student's model.json has {what}", export, "error", names=("model.json",),
                   setup=model_json_edit(**changes))
    yield Case(area, "export a run whose results.json 'method' names a model it lacks", export, "error",
               names=("cqd",), setup=changed_json("run/results.json", lambda r: r.update(method="cqd")))
    explain = "explain {d}/run --images 4 --examples 2 --quiet"
    # explain reads config.json and the models, never results.json: it computes what it shows
    yield Case(area, "explain a run whose results.json 'models' is empty (explain does not read it)", explain, "either",
               setup=changed_json("run/results.json", lambda r: r.update(models={})))
    yield Case(area, "explain a run whose student's test_z is a string (explain does not read it)", explain, "either",
               setup=changed_json("run/results.json", student_score("test_z", "high")))

    tune = "tune {tiny} --degrade gray --method cqd --seeds 1 --lambdas 1 --temperatures 10 --out {d}/out"
    yield Case(area, "tune --val-fraction 0 (nothing to score on)", tune + " --val-fraction 0", "error",
               names=("--val-fraction",))
    yield Case(area, "tune --val-fraction 1e-9 (the split keeps one validation image per class)",
               tune + " --val-fraction 1e-9", "either", trains=True, check=tuned_something("cqd"))
    yield Case(area, "tune --temperatures 0", tune + " --temperatures 0", "error", names=("--temperatures",))
    yield Case(area, "tune --method a-cqd with different teacher and student architectures",
               tune.replace("--method cqd", "--method a-cqd") + " --teacher convnet-m", "either", trains=True,
               check=tuned_something("a-cqd"))
    yield Case(area, "tune --method cqd,a-cqd with different architectures (a-cqd skipped, and said)",
               tune.replace("--method cqd", "--method cqd,a-cqd") + " --teacher convnet-m", "either", trains=True,
               check=all_of(tuned_something("cqd"), lambda c, o: None if "a-cqd" in o.text else (
                   "silent", "a-cqd was not tuned and the output does not say so")))

    no_temporaries = nothing_left(f".*{TEMPORARY_SUFFIX}")
    for what, command, setup in [
        ("export (ONNX)", "export {d}/run --out {d}/student.onnx", copy_base),
        ("export --format torchscript", "export {d}/run --format torchscript --out {d}/student.pt", copy_base),
        ("export into RUN_DIR/export/", "export {d}/run", copy_base),
        ("convert-weights", CONVERT, vggm_network),
        ("report --out outside the run", REPORT % "site", copy_base),
        ("explain --out outside the run", EXPLAIN % "site", copy_base),
        ("sr-train", "sr-train {tiny_sr} --out {d}/sr.safetensors", None),
    ]:
        yield Case(area, f"{what} killed -9 while writing, then again: no temporary left",
                   killed_while_writing(command), "ok", setup=setup, check=no_temporaries, trains=what == "sr-train")


def all_cases(quick: bool) -> list[Case]:
    rng = random.Random(14)
    kills = sorted(rng.uniform(0.15, 0.95) for _ in range(5))
    groups = [option_cases(), name_cases(), spec_cases(), image_cases(), dataset_cases(), training_data_cases(),
              weights_cases(), resume_cases(), concurrency_cases(kills), disk_cases(), export_cases(), config_cases(),
              plugin_cases(), command_cases(), overwrite_cases(), stale_cases(), geometry_cases(), size_cases(),
              config_type_cases(), nonfile_cases(), broken_cases()]
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
    print(f"\n{'area':16s}{'tried':>7s}" + "".join(f"{c:>11s}" for c in columns))
    for area, counts in [*per_area.items(), ("total", total)]:
        print(f"{area:16s}{counts['tried']:7d}" + "".join(f"{counts[c]:11d}" for c in columns))
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
                print(f"{case.area:16s} {'train' if case.trains else '     '} {case.what}")
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
