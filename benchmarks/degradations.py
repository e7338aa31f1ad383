"""Single-thread throughput of cqdkit's degradations at 224 x 224, against the direct library calls.

Run: ``python benchmarks/degradations.py``. Times are the process's CPU time (time spent waiting for a
shared CPU does not count), each number is the best of many short rounds, and the two sides of every
ratio are timed in interleaved rounds of the same run.

Requirements checked (issue 3): tps >= 1000 images/s and >= 100x kornia's warp_image_tps with the same
14 x 14 grid; lowres and the edges fallback >= 0.9x a direct OpenCV call doing the same work.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy is imported

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cqdkit.degradations import PairMaker, Views  # noqa: E402
from cqdkit.degradations.edges import gradient_kernels  # noqa: E402
from cqdkit.degradations.tps import tps_warp  # noqa: E402
from cqdkit.testing.degradations import textured_image  # noqa: E402

SIZE = 224


def per_second(*functions: Callable[[], object], seconds: float, rounds: int) -> list[float]:
    """Calls per second of each function: the best of ``rounds`` rounds, the functions' rounds interleaved
    (so that a change in machine load hits all of them alike)."""
    calls = []
    for function in functions:
        function()
        start, count = time.process_time(), 0
        while time.process_time() - start < seconds / rounds or count < 2:
            function()
            count += 1
        calls.append(count)
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for index, function in enumerate(functions):
            start = time.process_time()
            for _ in range(calls[index]):
                function()
            best[index] = min(best[index], (time.process_time() - start) / calls[index])
    return [1.0 / b for b in best]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def op_of(spec: str) -> Callable[[Views, np.random.Generator], Views]:
    return PairMaker(spec, size=SIZE).ops[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per function measured (default 2)")
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds, the best counts (default 40)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    image = textured_image(SIZE, SIZE)
    views = Views(image, None, image, image)
    rng = np.random.default_rng(0)
    rates: dict[str, float] = {}

    def measure(functions: dict[str, Callable[[], object]], seconds: float = args.seconds, rounds: int = 0):
        found = per_second(*functions.values(), seconds=seconds, rounds=rounds or args.rounds)
        rates.update(zip(functions, found))

    tps, lowres, edges = op_of("tps"), op_of("lowres"), op_of("edges:detector=gradient")
    tps(views, rng)  # build the (size, grid) operator outside the timing
    sampling = tps_warp(SIZE, 14).sampling_map(tps.displacements(SIZE, rng))
    fixed_maps = cv2.convertMaps(sampling, None, cv2.CV_16SC2)  # the form the op resamples with
    measure({"tps": lambda: tps(views, rng), "cv2.remap, precomputed map": lambda: remap(image, *fixed_maps)})
    measure({"kornia warp_image_tps": kornia_tps(image, rng)}, seconds=3.0, rounds=3)  # ~1 s per call
    measure({"lowres": lambda: lowres(views, rng), "cv2.resize down + up": lambda: down_up(image)})
    measure({"edges (gradient fallback)": lambda: edges(views, rng),
             "cv2 gradient drawing": lambda: draw(image)})
    others = {spec: op_of(spec) for spec in ("gray", "noise", "blur", "jpeg", "pixelate")}
    measure({spec: (lambda op=op: op(views, rng)) for spec, op in others.items()})
    raw = textured_image(375, 500)  # a CUB-sized photo, the whole per-sample path
    maker = PairMaker("tps", size=SIZE, crop=True)
    measure({"PairMaker('tps', crop=True), 500x375 input": lambda: maker(raw, (60, 40, 300, 250), seed=1)})
    report(rates)


def kornia_tps(image: np.ndarray, rng: np.random.Generator) -> Callable[[], object]:
    """One kornia TPS warp per call, with the same knots and jitter as cqdkit's tps."""
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    knots = torch.from_numpy(tps_warp(SIZE, 14).knots).float()
    source = ((2 * knots + 1) / SIZE - 1)[None]  # kornia's normalised frame (align_corners=False)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()

    def warp() -> object:
        jitter = torch.from_numpy(rng.standard_normal((1, 196, 2))).float() * (2.0 * 2 / SIZE)
        kernel_weights, affine_weights = get_tps_transform(source + jitter, source)
        return warp_image_tps(tensor, source, kernel_weights, affine_weights)

    return warp


# The direct OpenCV calls that do the same work as the ops.


def remap(image: np.ndarray, fixed: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    return cv2.remap(image, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def down_up(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (50, 50), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def draw(image: np.ndarray) -> np.ndarray:
    smooth, derivative, gain = gradient_kernels(image.shape[0])
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    dx = cv2.sepFilter2D(gray, cv2.CV_32F, derivative, smooth, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.sepFilter2D(gray, cv2.CV_32F, smooth, derivative, borderType=cv2.BORDER_REFLECT_101)
    lines = cv2.convertScaleAbs(cv2.magnitude(dx, dy), alpha=gain)
    return cv2.cvtColor(lines, cv2.COLOR_GRAY2RGB)


def report(rates: dict[str, float]) -> None:
    checks = [
        ("tps", "kornia warp_image_tps", 100.0),
        ("tps", "cv2.remap, precomputed map", None),
        ("lowres", "cv2.resize down + up", 0.9),
        ("edges (gradient fallback)", "cv2 gradient drawing", 0.9),
    ]
    title = f"degradations at {SIZE}x{SIZE}, 1 thread - {cpu_model()} ({os.cpu_count()} cores)"
    table = Table(title=title)
    for column in ("op", "images/s", "vs", "ratio", "required"):
        table.add_column(column, justify="left" if column in ("op", "vs") else "right")
    listed = set()
    for name, baseline, required in checks:
        ratio = rates[name] / rates[baseline]
        verdict = "" if required is None else f">= {required:g} " + ("ok" if ratio >= required else "FAIL")
        versus = f"{baseline} ({rates[baseline]:,.1f}/s)"
        table.add_row(name, f"{rates[name]:,.0f}", versus, f"{ratio:.2f}", verdict)
        listed.update((name, baseline))
    tps_ok = "ok" if rates["tps"] >= 1000 else "FAIL"
    table.add_row("tps", f"{rates['tps']:,.0f}", "", "", f">= 1000/s {tps_ok}")
    for name, rate in rates.items():
        if name not in listed:
            table.add_row(name, f"{rate:,.0f}", "", "", "")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
