"""The explanation of one run as PNG figures, ``report.md``, ``report.html`` and ``report.json``.

:func:`write_report` takes an :class:`Explanation` (numbers and example images, computed by
``cqdkit explain``) and writes into one folder::

    saliency.png     input | B saliency | A+CQD saliency, one row per example (paper Figure 6 left)
    tau.png          tau of B against tau of A+CQD per image, the diagonal and the means (Figure 6 right)
    confusions.png   the class pairs whose confusion drops most, with example images (Figure 7)
    report.md        the numbers and the figures, for reading
    report.html      the same as a standalone page
    report.json      every number (per-image tau included)

Figures are drawn with matplotlib's Agg canvas (no display needed). Saliency maps are shown per image
scaled to their own maximum, darker meaning a larger gradient, as in the paper.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CqdkitError
from ..files import atomic_save_figure, atomic_write_text, check_ours
from .confusion import PairReduction

#: Every file :func:`write_report` may write into its folder.
REPORT_FILES = ("saliency.png", "tau.png", "confusions.png", "report.json", "report.md", "report.html")

#: What tau measures, as stated in every report.
TAU_DEFINITION = (
    "tau = sum of ||G_i||_2 over the pixels i inside the object box / the same sum over the whole image "
    "(paper section 3.2), G = d log p(true class | z) / d z; tau_energy uses the gradient energy "
    "||G_i||_2^2 instead. Pixels cut by the box edge count with the fraction of their area inside it."
)


@dataclass
class Explanation:
    """Everything a report shows; arrays are numpy.

    Attributes:
        run: the run directory.
        names: the two models' titles, e.g. ``("B", "A+CQD")``.
        methods: their method names, e.g. ``("b", "a-cqd")``.
        classes: class names, by index.
        accuracy: top-1 accuracy of the two models on the test z views.
        images: ``(K, H, W, 3)`` uint8 example inputs (z views) for the saliency figure.
        labels: ``(K,)`` their classes.
        boxes: ``(K, 4)`` their boxes ``(x0, y0, x1, y1)`` in pixels (NaN: none).
        maps: the two models' ``(K, H, W)`` saliency maps of the examples.
        tau: the two models' ``(N,)`` tau per analysed image (None: tau was skipped, see ``tau_note``).
        tau_energy: the same with squared gradient norms.
        box_area: ``(N,)`` the box's share of the image area: the tau of a map spread uniformly.
        tau_ids: the record ids of the N images.
        tau_note: why tau was skipped, or remarks on it (e.g. images without a box).
        pairs: the class pairs whose pairwise confusion dropped most from the first model to the second.
        pair_examples: for each pair, ``[(x, z) of class i, (x, z) of class j]`` as ``(H, W, 3)`` uint8.
        test_images: how many test images the confusions are measured on.
    """

    run: str
    names: tuple[str, str]
    methods: tuple[str, str]
    classes: list[str]
    accuracy: tuple[float, float]
    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    maps: tuple[np.ndarray, np.ndarray]
    tau: tuple[np.ndarray, np.ndarray] | None
    tau_energy: tuple[np.ndarray, np.ndarray] | None
    box_area: np.ndarray | None = None
    tau_ids: list[str] = field(default_factory=list)
    tau_note: str | None = None
    pairs: list[PairReduction] = field(default_factory=list)
    pair_examples: list[list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)
    test_images: int = 0

    def summary(self) -> dict[str, Any]:
        """The numbers of the report (what ``report.json`` holds)."""
        first, second = self.names
        payload: dict[str, Any] = {
            "run": self.run,
            "models": {first: self.methods[0], second: self.methods[1]},
            "test_z_accuracy": {first: self.accuracy[0], second: self.accuracy[1]},
            "test_images": self.test_images,
            "tau_definition": TAU_DEFINITION,
            "tau": None,
            "tau_note": self.tau_note,
            "pairs": [
                {
                    "i": pair.i,
                    "j": pair.j,
                    "classes": [self.classes[pair.i], self.classes[pair.j]],
                    f"confusion_{first}": pair.before,
                    f"confusion_{second}": pair.after,
                    "reduction": pair.reduction,
                }
                for pair in self.pairs
            ],
        }
        if self.tau is not None and self.tau_energy is not None:
            payload["tau"] = {
                "images": int(np.isfinite(self.tau[0]).sum()),
                "mean": {first: _mean(self.tau[0]), second: _mean(self.tau[1])},
                "energy_mean": {first: _mean(self.tau_energy[0]), second: _mean(self.tau_energy[1])},
                "uniform_mean": _mean(self.box_area) if self.box_area is not None else None,
                f"{second}_higher": _share_higher(*self.tau),
                "per_image": [
                    {"id": image_id, first: _number(a), second: _number(b)}
                    for image_id, a, b in zip(self.tau_ids, self.tau[0], self.tau[1])
                ],
            }
        return payload


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(out: Path, explanation: Explanation) -> dict[str, Path]:
    """Write the figures and the three reports into ``out``; returns their paths by name.

    Raises:
        CqdkitError: ``out`` holds a file of the report's names that cqdkit did not write (nothing is written).
    """
    out = Path(out)
    check_report_files(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"saliency": out / "saliency.png"}
    saliency_figure(paths["saliency"], explanation)
    if explanation.tau is not None:
        paths["tau"] = out / "tau.png"
        tau_figure(paths["tau"], explanation.tau, explanation.names)
    if explanation.pairs:
        paths["confusions"] = out / "confusions.png"
        pairs_figure(paths["confusions"], explanation)
    summary = explanation.summary()
    paths["json"] = out / "report.json"
    text = json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n"  # NaN -> null: valid JSON
    atomic_write_text(paths["json"], text)
    blocks = _blocks(explanation, summary, {name: path.name for name, path in paths.items()})
    paths["markdown"] = out / "report.md"
    atomic_write_text(paths["markdown"], _markdown(blocks))
    paths["html"] = out / "report.html"
    atomic_write_text(paths["html"], _html(blocks, title=f"cqdkit explain: {explanation.run}"))
    return paths


def check_report_files(out: Path) -> None:
    """Stop before anything is computed or written when ``out`` is not a folder, or holds a file of
    :data:`REPORT_FILES` that cqdkit did not write (:func:`cqdkit.files.check_ours`).

    Raises:
        CqdkitError: naming the path.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CqdkitError(f"{out} is a file; expected the folder to write the explanation into (--out FOLDER)")
    for name in REPORT_FILES:
        check_ours(out / name)


# -- figures ------------------------------------------------------------------------------------


def _figure(width: float, height: float, layout: str | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def saliency_figure(path: Path, explanation: Explanation) -> None:
    """One row per example: the input with its box, then each model's saliency map."""
    rows = len(explanation.images)
    figure = _figure(7.5, 2.5 * max(rows, 1))
    axes = figure.subplots(max(rows, 1), 3, squeeze=False)
    for row in range(rows):
        label = explanation.classes[int(explanation.labels[row])]
        panels = [(explanation.images[row], f"input ({label})", None)]
        for name, maps in zip(explanation.names, explanation.maps):
            panels.append((maps[row], f"{name} saliency", "gray_r"))
        for axis, (picture, title, cmap) in zip(axes[row], panels):
            if cmap is None:
                axis.imshow(picture)
            else:
                axis.imshow(picture, cmap=cmap, vmin=0.0, vmax=max(float(picture.max()), 1e-12))
            _draw_box(axis, explanation.boxes[row])
            axis.set_title(title, fontsize=9)
            axis.set_axis_off()
    figure.tight_layout()
    atomic_save_figure(figure, path)


def _draw_box(axis: Any, box: np.ndarray) -> None:
    from matplotlib.patches import Rectangle

    if np.isnan(box).any():
        return
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)  # imshow centres pixel c at c; it covers [c, c + 1)
    axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="tab:red", linewidth=1))


def tau_figure(path: Path, tau: tuple[np.ndarray, np.ndarray], names: tuple[str, str]) -> None:
    """Scatter of tau per image (first model on x, second on y), the diagonal and both means."""
    first, second = (np.asarray(values, dtype=np.float64) for values in tau)
    keep = np.isfinite(first) & np.isfinite(second)
    figure = _figure(5.0, 5.0)
    axis = figure.subplots()
    axis.scatter(first[keep], second[keep], s=8, alpha=0.5, color="tab:blue", label="images")
    axis.plot([0, 1], [0, 1], color="gray", linewidth=1, linestyle="--", label="equal tau")
    mean_first, mean_second = _mean(first), _mean(second)
    axis.axvline(mean_first, color="tab:orange", linewidth=1, label=f"mean {names[0]} = {mean_first:.3f}")
    axis.axhline(mean_second, color="tab:green", linewidth=1, label=f"mean {names[1]} = {mean_second:.3f}")
    axis.scatter([mean_first], [mean_second], marker="x", s=60, color="black", zorder=3)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_aspect("equal")
    axis.set_xlabel(f"tau {names[0]}")
    axis.set_ylabel(f"tau {names[1]}")
    axis.set_title(f"gradient inside the box, {int(keep.sum())} images")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    atomic_save_figure(figure, path)


def pairs_figure(path: Path, explanation: Explanation) -> None:
    """One row per class pair: x and z of an example of each class, titled with the confusion drop."""
    first, second = explanation.names
    rows = len(explanation.pairs)
    figure = _figure(9.0, 2.6 * rows, layout="constrained")
    for subfigure, pair, examples in zip(figure.subfigures(rows, 1, squeeze=False)[:, 0], explanation.pairs,
                                         explanation.pair_examples):
        subfigure.suptitle(f"{explanation.classes[pair.i]} / {explanation.classes[pair.j]}: pairwise confusion "
                           f"{first} {pair.before:.2f} -> {second} {pair.after:.2f}", fontsize=10, fontweight="bold")
        axes = subfigure.subplots(1, 4)
        for column, (label, (x, z)) in enumerate(zip((pair.i, pair.j), examples)):
            for offset, (picture, view) in enumerate(((x, "x"), (z, "z"))):
                axis = axes[2 * column + offset]
                axis.imshow(picture)
                axis.set_title(f"{explanation.classes[label]} ({view})", fontsize=7)
                axis.set_axis_off()
    atomic_save_figure(figure, path)


# -- documents ----------------------------------------------------------------------------------

Block = tuple[str, Any]


def _blocks(explanation: Explanation, summary: dict[str, Any], files: dict[str, str]) -> list[Block]:
    """The report's content, in order, for both the Markdown and the HTML renderer."""
    first, second = explanation.names
    blocks: list[Block] = [
        ("h1", "Why CQD works: saliency, tau and confusions"),
        ("p", f"Run: {explanation.run}. Models: {first} ({explanation.methods[0]}) and {second} "
              f"({explanation.methods[1]}), both trained on the low-quality views z and evaluated on the "
              f"{explanation.test_images} test z views."),
        ("table", (["model", "test z top-1 accuracy (%)"],
                   [[name, f"{100 * value:.1f}"] for name, value in zip(explanation.names, explanation.accuracy)])),
        ("h2", "Saliency"),
        ("p", "Per-pixel norm of the gradient of log p(true class | z) with respect to z, over the colour "
              "channels; darker is larger, each map scaled to its own maximum; the red frame is the object box."),
        ("img", files["saliency"]),
        ("h2", "tau: gradient inside the object box"),
        ("p", TAU_DEFINITION),
    ]
    tau = summary["tau"]
    if tau is None:
        blocks.append(("p", f"tau was not computed: {explanation.tau_note}"))
    else:
        higher = 100 * tau[f"{second}_higher"]
        blocks += [
            ("table", (["model", "mean tau", "mean tau_energy"],
                       [[name, f"{tau['mean'][name]:.4f}", f"{tau['energy_mean'][name]:.4f}"]
                        for name in explanation.names])),
            ("p", f"{tau['images']} images; {second} has the higher tau on {higher:.1f}% of them."
                  + (f" A gradient spread uniformly over the image would give tau = {tau['uniform_mean']:.4f}"
                     " (the mean share of the image the box covers)." if tau["uniform_mean"] is not None else "")
                  + (f" {explanation.tau_note}" if explanation.tau_note else "")),
            ("img", files["tau"]),
        ]
    blocks.append(("h2", f"Class pairs confused less by {second} than by {first}"))
    blocks.append(("p", "Pairwise confusion c(i, j) + c(j, i), c(i, j) being the fraction of the test images "
                        "of class i classified as class j (rows of the confusion matrix normalised per class)."))
    if not explanation.pairs:
        blocks.append(("p", f"No class pair is confused less by {second} than by {first}."))
    else:
        blocks.append(("table", (
            ["class i", "class j", f"{first}", f"{second}", "reduction"],
            [[explanation.classes[p.i], explanation.classes[p.j], f"{p.before:.3f}", f"{p.after:.3f}",
              f"{p.reduction:.3f}"] for p in explanation.pairs],
        )))
        blocks.append(("img", files["confusions"]))
    blocks.append(("p", f"All numbers: {files['json']}."))
    return blocks


def _markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind == "h1":
            lines += [f"# {content}", ""]
        elif kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "img":
            lines += [f"![{content}]({content})", ""]
        elif kind == "table":
            header, rows = content
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _html(blocks: list[Block], *, title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}img{max-width:100%}</style>",
        "</head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "img":
            parts.append(f'<p><img src="{html.escape(content)}" alt="{html.escape(content)}"></p>')
        elif kind == "table":
            header, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _mean(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _share_higher(first: np.ndarray, second: np.ndarray) -> float:
    """The fraction of images (with both values known) where ``second`` exceeds ``first``."""
    known = np.isfinite(first) & np.isfinite(second)
    return float((second[known] > first[known]).mean()) if known.any() else float("nan")


def _number(value: float) -> float | None:
    """A JSON-safe float (NaN becomes null)."""
    return None if math.isnan(value) else float(value)
