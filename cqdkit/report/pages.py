"""The content of the report pages: what a run or a table says, as HTML (markup from :mod:`.html`).

:func:`run_page` and :func:`table_page` take what was read (:mod:`.folder`), computed
(:mod:`.predictions`) and drawn (the figure file names), and return the page. Every number shown rounded
carries its exact value in a ``data-value`` attribute.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .. import __version__
from .folder import RunFolder, TableFolder
from .html import Cell, Markup, breakable, figure, join, page, table, tag
from .predictions import TestPredictions

#: What each view is, in the paper's words.
VIEW_NAMES = {"x": "x (high quality)", "z": "z (low quality)"}


def title_of(method: str) -> str:
    """A method's name in the paper's tables (``a-cqd`` -> ``A+CQD``); other names as they are."""
    from ..train.methods import METHODS

    return METHODS[method].title if method in METHODS else method


def percent(value: Any) -> Cell:
    """An accuracy in percent with one decimal (``n/a`` for NaN or a missing value)."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return Cell("n/a", None if value is None else float("nan"))
    return Cell(f"{100 * value:.1f}", float(value))


def points(value: float) -> Cell:
    """A difference of accuracies in percentage points, signed."""
    if math.isnan(value):
        return Cell("n/a", value)
    return Cell(f"{100 * value:+.1f}", value, css="good" if value > 0 else "bad" if value < 0 else None)


def plain(value: Any, digits: int = 3) -> Cell:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return Cell(str(value) if value is not None else "—", numeric=False)
    if math.isnan(value):
        return Cell("n/a", float(value))
    return Cell(f"{value:.{digits}f}" if isinstance(value, float) else str(value), float(value))


def card(label: str, cell: Cell, unit: str = "") -> Markup:
    value = tag("div", f"{cell.text}{unit if cell.value is not None and not math.isnan(cell.value) else ''}", class_=" ".join(c for c in ("value", cell.css) if c),
                data_value=None if cell.value is None else repr(float(cell.value)))
    return tag("div", [value, tag("div", label, class_="label")], class_="card")


def value_text(value: Any) -> str:
    """A setting as text: JSON for lists and dicts, ``—`` for None."""
    if value is None:
        return "—"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:.6g}"  # 0.0166667, not 0.016666666666666666
    return str(value)


def key_values(caption: str, items: Sequence[tuple[str, Any]]) -> Markup:
    rows = [[Markup(tag("code", key)), value_text(value)] for key, value in items]
    return join([tag("h3", caption), table(["setting", "value"], rows)])


def links(names: Sequence[tuple[str, str]]) -> Markup:
    """``(text, relative path)`` pairs as links, comma separated."""
    return join([tag("a", text, href=href) for text, href in names], ", ")


# -- a run ------------------------------------------------------------------------------------------


def run_page(folder: RunFolder, *, curves: str | None, per_class: str | None, predictions: TestPredictions | None,
             example_files: Sequence[tuple[str, str]], skipped: str | None, files: Sequence[tuple[str, str]]) -> str:
    """The report of a ``cqdkit run`` folder.

    Args:
        curves, per_class: the figures' paths relative to the page (None: not drawn).
        predictions: the test-split predictions (None: not computed, ``skipped`` says why).
        example_files: ``(x, z)`` image paths of each example, relative to the page.
        files: ``(name, relative path)`` of the run's files to link to.
    """
    results, config = folder.results, folder.config
    models, method = folder.models, folder.method
    scores = results["models"]
    run = config.get("run", {})
    dataset = config.get("dataset", {})
    body: list[object] = [_run_header(folder)]

    cards = []
    if "a" in scores:
        cards += [card(f"{title_of('a')} (teacher) on test x", percent(scores["a"].get("test_x")), "%"),
                  card(f"{title_of('a')} (teacher) on test z", percent(scores["a"].get("test_z")), "%")]
    if folder.baseline in scores and folder.baseline != method:
        cards.append(card(f"{title_of(folder.baseline)} on test z", percent(scores[folder.baseline].get("test_z")), "%"))
    if method in scores and method != "a":
        cards.append(card(f"{title_of(method)} (student) on test z", percent(scores[method].get("test_z")), "%"))
    if "gain" in results:
        gain = points(results["gain"])
        cards.append(card(f"{title_of(method)} − {title_of(folder.baseline or 'b')} (points)", gain))
    body.append(tag("div", cards, class_="cards", id="summary"))

    body.append(tag("h2", "Results", id="results"))
    body.append(tag("p", f"Per-image top-1 accuracy on the {dataset.get('test', '?')} test images, on their "
                         "high-quality views x and on their low-quality views z; NLL is the mean negative "
                         "log-likelihood of the true class.", class_="muted"))
    rows, row_classes = [], []
    from ..train.methods import METHODS

    for name in models:
        known = METHODS.get(name)
        architecture = (results.get("teacher") if known and known.role == "teacher" else results.get("student"))
        model_scores = scores[name]
        rows.append([
            Cell(title_of(name), numeric=False), Cell(name, numeric=False), Cell(architecture or "?", numeric=False),
            Cell(known.view if known else "?", numeric=False),
            percent(model_scores.get("test_x")), percent(model_scores.get("test_z")),
            plain(model_scores.get("test_x_nll")), plain(model_scores.get("test_z_nll")),
            plain(model_scores.get("images_per_second"), 0),
        ])
        row_classes.append("student" if name == method else None)
    header = ["model", "method", "architecture", "trained on", "test x (%)", "test z (%)", "test x NLL",
              "test z NLL", "train images/s"]
    body.append(table(header, rows, numeric=[False] * 4 + [True] * 5, row_classes=row_classes, css="results"))
    if "gain" in results:
        gain = points(results["gain"])
        body.append(tag("p", [f"{title_of(method)} − {title_of(folder.baseline or 'b')} on the test z views: ",
                              tag("strong", f"{gain.text} points", class_=gain.css, id="gain",
                                  data_value=repr(float(results["gain"]))),
                              " (what distillation, and starting from A, gave over training on z alone)."]))
    body.append(_distillation(results, config))

    body.append(tag("h2", "Learning curves", id="curves"))
    if curves:
        body.append(figure(curves, "learning curves", "Per epoch, from each model's log.jsonl. The distillation "
                                                      "term is shown for the models trained with it; the loss of "
                                                      "those is CE + λ × that term. The soft cross-entropy never "
                                                      "falls below the teacher's entropy: its KL part is what the "
                                                      "student can still reduce."))
    else:
        body.append(tag("p", "No log.jsonl was found for any model.", class_="muted"))

    body.append(tag("h2", "Test examples", id="examples"))
    if predictions is None:
        body.append(tag("p", f"Not shown: {skipped}", class_="muted"))
    else:
        body.append(_examples(predictions, example_files, int(run.get("image_size", 0) or 0)))
    body.append(tag("h2", "Per-class accuracy", id="per-class"))
    if predictions is None:
        body.append(tag("p", f"Not shown: {skipped}", class_="muted"))
    else:
        body.append(_per_class(predictions, per_class))

    body.append(tag("h2", "Settings", id="settings"))
    body.append(_settings(config))
    body.append(tag("footer", [f"Written by cqdkit {__version__} from the run folder's files: ", links(files), "."]))
    return page(f"cqdkit report: {folder.path.name}", body)


def _run_header(folder: RunFolder) -> Markup:
    results, config = folder.results, folder.config
    dataset = config.get("dataset", {})
    facts = [
        join(["degradation ", tag("code", results.get("degrade", "?"))]),
        join(["dataset ", tag("strong", results.get("dataset", "?")),
              f" ({dataset.get('classes', '?')} classes; {dataset.get('train', '?')} training, "
              f"{dataset.get('val', '?')} validation, {dataset.get('test', '?')} test images)"]),
        join(["teacher ", tag("strong", results.get("teacher", "?")), " → student ",
              tag("strong", results.get("student", "?")), f", method {title_of(folder.method)}"]),
    ]
    wall = results.get("wall_seconds")
    if isinstance(wall, (int, float)):
        facts.append(f"wall time {wall:.0f} s")
    return tag("header", [
        tag("h1", f"Run report: {folder.path.name}"),
        tag("p", join(facts, " · ")),
        tag("p", ["folder ", tag("code", str(folder.path.resolve()))], class_="muted"),
    ])


def _distillation(results: dict[str, Any], config: dict[str, Any]) -> Markup:
    """Loss, T and lambda of the distilled method, and how strongly the term pulled on the logits."""
    distillation = results.get("distillation") or config.get("distillation") or {}
    if not distillation:
        return Markup("")
    method = title_of(str(distillation.get("method", "?")))
    if distillation.get("distillation_helps") is False:
        return tag("p", [tag("strong", "Distillation"), f" ({method}): did not help on validation (no strength of ",
                         tag("code", distillation.get("loss", "?")), " beat λ = 0 beyond the seeds' spread): the "
                         "student is its baseline."], id="distillation")
    terms = distillation.get("terms") or []
    spec = "+".join(term["spec"] for term in terms) if len(terms) > 1 else distillation.get("loss", "?")
    parts: list[object] = [tag("strong", "Distillation"), f" ({method}): loss ", tag("code", spec)]
    for symbol, key in (("T", "temperature"), ("λ", "lambda")):
        if isinstance(distillation.get(key), (int, float)):
            parts.append(f", {symbol} = {distillation[key]:g}")
    if distillation.get("chosen_by") == "validation":
        parts.append(" (chosen on the validation split)")
    weight = distillation.get("logit_weight")
    if isinstance(weight, (int, float)):
        parts.append(f" (weight on each logit λ / (C · T²) = {weight:.3g})")
    ratio = results["models"].get(results.get("method"), {}).get("distill_gradient_ratio")
    if ratio == 0:  # terms on features or relations only
        parts.append("; it acts on intermediate features, not directly on the logits")
    elif isinstance(ratio, (int, float)):
        parts += ["; its gradient on the logits was ",
                  tag("span", f"{ratio:.2f}", id="gradient-ratio", data_value=repr(float(ratio))),
                  " × the cross-entropy's (last epoch)"]
    parts.append(".")
    return tag("p", parts, id="distillation")


def _examples(predictions: TestPredictions, files: Sequence[tuple[str, str]], image_size: int) -> Markup:
    classes = predictions.classes
    small = "small" if 0 < image_size < 96 else None
    cards = []
    for example, (x_file, z_file) in zip(predictions.examples, files):
        guesses = []
        for method, guess in example.predicted.items():
            view = "x" if method == "a" else "z"
            right = guess == example.label
            guesses.append(tag("li", ["✓ " if right else "✗ ", tag("span", f"{title_of(method)} on {view}:", class_="who"),
                                      " ", breakable(classes[guess])], class_="good" if right else "bad"))
        views = [tag("div", [tag("img", src=path, alt=f"{view} of test image {example.index}", class_=small),
                             f"{view}"], class_="view") for view, path in (("x", x_file), ("z", z_file))]
        cards.append(tag("div", [tag("div", breakable(classes[example.label]), class_="class",
                                     title=f"true class: {classes[example.label]}"),
                                 tag("div", views, class_="views"), tag("ul", guesses)],
                         class_="example", data_index=example.index))
    return join([
        tag("p", "Test images spread over the classes: the high-quality view x with the teacher's prediction, and "
                 "the low-quality view z with the predictions of the models trained on z (✓ right, ✗ wrong).",
            class_="muted"),
        tag("div", cards, class_="examples"),
    ])


def _per_class(predictions: TestPredictions, image: str | None) -> Markup:
    methods = list(predictions.predicted)
    if not methods:
        return tag("p", "No model of this run was trained on z.", class_="muted")
    counts = predictions.counts()
    accuracies = {method: predictions.per_class(method) for method in methods}
    header = ["class", "test images"] + [f"{title_of(m)} (%)" for m in methods]
    if len(methods) >= 2:
        header.append(f"{title_of(methods[-1])} − {title_of(methods[0])} (points)")
    rows = []
    for c, name in enumerate(predictions.classes):
        row: list[object] = [Cell(name, numeric=False), Cell(str(int(counts[c])), int(counts[c]))]
        row += [percent(float(accuracies[m][c])) for m in methods]
        if len(methods) >= 2:
            row.append(points(float(accuracies[methods[-1]][c] - accuracies[methods[0]][c])))
        rows.append(row)
    totals = ", ".join(f"{title_of(m)} {100 * predictions.accuracy(m):.1f}%" for m in methods)
    parts: list[object] = [tag("p", f"Accuracy on each class's test z views (over all {int(counts.sum())} test "
                                    f"images: {totals}).", class_="muted")]
    if image:
        parts.append(figure(image, "per-class accuracy", ""))
    parts.append(tag("details", [tag("summary", f"every class ({len(predictions.classes)})"),
                                 table(header, rows, css="per-class")],
                     open="open" if len(predictions.classes) <= 12 else None))
    return join(parts)


def _settings(config: dict[str, Any]) -> Markup:
    parts: list[object] = []
    run = config.get("run", {})
    precision = (config.get("environment") or {}).get("precision")
    if run:
        items = [(key, f"{value} → {precision}" if key == "amp" and precision else value) for key, value in run.items()]
        parts.append(key_values("Run (config.json)", items))
    pipeline = config.get("pipeline", {})
    if pipeline:
        items: list[tuple[str, Any]] = [("spec", pipeline.get("spec")), ("image size", pipeline.get("size")),
                                        ("crop", pipeline.get("crop")), ("augment", pipeline.get("augment")),
                                        ("x channels", pipeline.get("x_channels"))]
        for number, op in enumerate(pipeline.get("ops", []), start=1):
            facts = {k: v for k, v in op.items() if k != "name"}
            items.append((f"op {number}: {op.get('name', '?')}", facts))
        parts.append(key_values("Degradation pipeline", items))
    dataset = config.get("dataset", {})
    if dataset:
        items = [(k, v) for k, v in dataset.items() if k != "skipped"]
        items.append(("skipped samples", len(dataset.get("skipped") or [])))
        parts.append(key_values("Dataset", items))
    for key in ("distillation", "environment"):
        if config.get(key):
            parts.append(key_values(key.capitalize(), list(config[key].items())))
    return tag("div", parts, class_="settings")


# -- a table ----------------------------------------------------------------------------------------


def table_page(folder: TableFolder, *, image: str, files: Sequence[tuple[str, str]]) -> str:
    """The report of a ``cqdkit table`` folder: the Table 1 figure, the table, every seed and the settings."""
    from ..train.table import GAP_ROW

    result = folder.table
    degradations, seeds = list(result["degradations"]), list(result["seeds"])
    body: list[object] = [tag("header", [
        tag("h1", f"Table report: {folder.path.name}"),
        tag("p", join(["teacher ", tag("strong", result.get("teacher", "?")), " → student ",
                       tag("strong", result.get("student", "?")), " · dataset ", tag("strong", result.get("dataset", "?")),
                       f" · {len(degradations)} degradation{'s' if len(degradations) != 1 else ''}, seeds "
                       f"{', '.join(str(s) for s in seeds)}"])),
        tag("p", ["folder ", tag("code", str(folder.path.resolve()))], class_="muted"),
    ])]
    body.append(tag("h2", "Table 1", id="table"))
    body.append(tag("p", "Per-image top-1 accuracy (%) on the test split, train / test view (A = x, B = z), mean ± "
                         "standard deviation over seeds. The last row is the share of the quality gap A+CQD closes, "
                         "(A+CQD/B − B/B) / (A/A − B/B), per seed, then averaged.", class_="muted"))
    body.append(figure(image, "Table 1 as bars", "Accuracy by method for each degradation; error bars: standard "
                                                 "deviation over seeds."))
    rows = []
    for row in result["rows"]:
        cells: list[object] = [Cell(row, numeric=False)]
        for degradation in degradations:
            stats = result["table"][degradation].get(row)
            values = result.get("raw", {}).get(degradation, {}).get(row, [])
            cells.append(_stats_cell(stats, row != GAP_ROW, values))
        rows.append(cells)
    body.append(table(["train / test", *degradations], rows, numeric=[False] + [True] * len(degradations),
                      css="table1"))
    body.append(_seeds(result))
    body.append(tag("h2", "Settings", id="settings"))
    body.append(_table_settings(result))
    body.append(tag("footer", [f"Written by cqdkit {__version__} from ", links(files), "."]))
    return page(f"cqdkit report: {folder.path.name}", body)


def _stats_cell(stats: dict[str, Any] | None, is_percent: bool, values: Sequence[float]) -> Cell:
    if not stats:
        return Cell("—", title="not trained (e.g. A→B and A+CQD need the same architecture for both)")
    mean, std, n = stats.get("mean", math.nan), stats.get("std", math.nan), int(stats.get("n", 0))
    if not isinstance(mean, (int, float)) or math.isnan(mean):
        return Cell("n/a", float("nan"), title="undefined: A/A equals B/B on some seed")
    scale, digits = (100, 1) if is_percent else (1, 2)
    text = f"{scale * mean:.{digits}f}" + (f" ± {scale * std:.{digits}f}" if n > 1 else "")
    seeds = ", ".join(f"{scale * v:.{digits}f}" for v in values)
    return Cell(text, float(mean), title=f"per seed: {seeds}" if seeds else None)


def _seeds(result: dict[str, Any]) -> Markup:
    raw = result.get("raw") or {}
    if not raw:
        return Markup("")
    seeds = list(result["seeds"])
    rows = []
    for degradation in result["degradations"]:
        for row, values in raw.get(degradation, {}).items():
            rows.append([Cell(degradation, numeric=False), Cell(row, numeric=False)]
                        + [percent(v) for v in values] + [""] * (len(seeds) - len(values)))
    header = ["degradation", "train / test", *[f"seed {s} (%)" for s in seeds]]
    return tag("details", [tag("summary", "every seed"),
                           table(header, rows, numeric=[False, False] + [True] * len(seeds), css="seeds")])


def _strength_text(chosen: dict[str, Any] | None, result: dict[str, Any], degradation: str, method: str) -> str:
    """A distilled method's strength in a table's settings: fixed or tuned T and λ, or what validation chose per
    seed."""
    if not chosen:
        return "—"
    if "temperature" in chosen and "lam" in chosen:
        return f"T = {chosen['temperature']:g}, λ = {chosen['lam']:g}"
    if chosen.get("chosen_by") != "validation":
        return str(chosen.get("loss"))
    per_seed = (result.get("distillation") or {}).get(degradation, {}).get(method, {})
    texts = []
    for seed, distillation in per_seed.items():
        terms = distillation.get("terms") or []
        texts.append(f"seed {seed}: " + (", ".join(term["spec"] for term in terms) if terms else "λ = 0"))
    return "chosen on validation: " + ("; ".join(texts) or "—")


def _table_settings(result: dict[str, Any]) -> Markup:
    from ..train.methods import METHODS

    settings = result.get("settings") or {}
    distilled = [name for name, method in METHODS.items() if method.distill]
    header = ["degradation", "spec", "epochs", *[f"{title_of(m)}: T, λ" for m in distilled]]
    rows = []
    for degradation in result["degradations"]:
        values = settings.get(degradation, {})
        pipeline = values.get("pipeline") or {}
        row: list[object] = [Cell(degradation, numeric=False), Cell(tag("code", pipeline.get("spec", degradation)),
                                                                    numeric=False),
                             plain(values.get("epochs"), 0)]
        for method in distilled:
            chosen = values.get(method) or ({"temperature": values["temperature"], "lam": values["lam"]}
                                           if "temperature" in values and "lam" in values else None)
            row.append(Cell(_strength_text(chosen, result, degradation, method), numeric=False, css="tl",
                            title=f"{method}"))
        rows.append(row)
    ops = []
    for degradation in result["degradations"]:
        for op in (settings.get(degradation, {}).get("pipeline") or {}).get("ops", []):
            ops.append([Cell(degradation, numeric=False), Cell(op.get("name", "?"), numeric=False),
                        Cell(value_text({k: v for k, v in op.items() if k != "name"}), numeric=False)])
    parts: list[object] = [
        tag("p", "T and λ are those each distilled method was trained with (per degradation when tuned with "
                 "cqdkit tune, per degradation and seed when chosen on validation: λ = 0 means the student is "
                 "its baseline).", class_="muted"),
        table(header, rows, numeric=[False, False, True] + [False] * len(distilled), css="settings-table"),
    ]
    if ops:
        parts += [tag("h3", "Degradation pipelines"), table(["degradation", "op", "parameters and facts"], ops)]
    return join(parts)
