"""``cqdkit report``: the HTML page and figures of a real tiny run and a real tiny table.

The run uses a dataset plugin whose class names hold HTML's special characters, in a folder whose name
holds them too, so every test also sees what escaping has to survive.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.cli import cli
from cqdkit.files import OWNED_LIST
from cqdkit.lock import LOCK_NAME
from cqdkit.plugin import DatasetSource, PluginManager, hookimpl, set_plugin_manager

from .test_run_cli import TINY

ROOT = Path(__file__).resolve().parents[1]
TINY_1 = [a if a != "2" or TINY[i - 1] != "--epochs" else "1" for i, a in enumerate(TINY)] + ["--no-pretrained"]
RUN_NAME = 'tiny <run> & "co"'
VOID = {"img", "meta", "br", "hr", "link", "input", "wbr"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def odd_names(root=None, *, skip_bad=False, **options):
    """The synthetic dataset, with class names a page must escape."""
    from cqdkit.data.synthetic import load_synthetic

    data = load_synthetic(root, skip_bad=skip_bad, **options)
    return dataclasses.replace(data, name="odd-names", classes=[f"<b>{name}</b> & 'co'" for name in data.classes])


class OddNames:
    @hookimpl
    def cqdkit_datasets(self):
        from cqdkit.data.plugin import SYNTHETIC_OPTIONS

        yield DatasetSource(name="odd-names", summary="synthetic, odd class names", factory=odd_names,
                            needs_root=False, options=dict(SYNTHETIC_OPTIONS))


@pytest.fixture(scope="module")
def manager():
    """A process-wide plugin manager with the odd-names dataset, for the module's runs and reports."""
    manager = PluginManager(autoload=False)
    manager.register(OddNames(), name="odd-names-plugin")
    previous = set_plugin_manager(manager)
    yield manager
    set_plugin_manager(previous)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))
        yield


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, manager, cache) -> Path:
    """A finished tiny run: A, B and A+CQD, one epoch each; its report written by the command."""
    out = tmp_path_factory.mktemp("report") / RUN_NAME
    result = invoke("run", "--degrade", "lowres", "--dataset", "odd-names", *TINY_1, "--out", str(out))
    assert result.exit_code == 0, result.output
    report = invoke("report", str(out), "--examples", "5", "--quiet")
    assert report.exit_code == 0, report.output
    assert f"report: {out / 'report' / 'index.html'}" in " ".join(report.stdout.split())
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory, cache) -> Path:
    """A finished tiny table (one degradation, two seeds) and its report written by the library."""
    from cqdkit.report import write_report

    out = tmp_path_factory.mktemp("table")
    result = invoke("table", "--degrade", "gray", "--seeds", "2", *TINY_1, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert write_report(out) == out / "report" / "index.html"
    return out


class Page(HTMLParser):
    """A parsed page: tags checked for nesting, every element with its attributes and text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict]] = []  # the open elements
        self.elements: list[dict] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements: {[tag for tag, _ in self.stack]}"

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append((tag, element))

    def handle_endtag(self, tag):
        assert self.stack, f"</{tag}> closes nothing"
        opened, _ = self.stack.pop()
        assert opened == tag, f"</{tag}> closes <{opened}>"

    def handle_data(self, data):
        self.text.append(data)
        for _, element in self.stack:
            element["text"] += data

    def find(self, tag: str, **attrs: str) -> list[dict]:
        return [e for e in self.elements if e["tag"] == tag and all(e["attrs"].get(k) == v for k, v in attrs.items())]

    def rows(self, css: str) -> list[list[dict]]:
        """The body rows of the table with class ``css``: each a list of its td elements."""
        tables = self.find("table", **{"class": css})
        assert len(tables) == 1, css
        rows, inside, current = [], False, None
        for element in self.elements:
            if element is tables[0]:
                inside = True
            elif inside and element["tag"] == "table":
                break
            elif inside and element["tag"] == "tr":
                current = []
                rows.append(current)
            elif inside and element["tag"] == "td":
                current.append(element)
        return [row for row in rows if row]


def page_of(folder: Path) -> tuple[str, Page]:
    text = (folder / "report" / "index.html").read_text()
    return text, Page(text)


def results_of(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_the_run_page_is_valid_self_contained_html(run):
    text, page = page_of(run)
    assert text.startswith("<!DOCTYPE html>") and page.find("meta", charset="utf-8")
    assert not page.find("script") and not page.find("link")  # the style sheet is inline, nothing is fetched
    for element in page.elements:
        for key in ("src", "href"):
            target = element["attrs"].get(key)
            if target is not None:
                assert not target.startswith(("/", "http:", "https:", "file:")), target
                assert (run / "report" / unquote(target)).resolve().exists(), target
    titles = [h["text"] for h in page.find("h2")]
    assert titles == ["Results", "Learning curves", "Test examples", "Per-class accuracy", "Settings"]


def test_the_amp_setting_says_what_the_models_computed_in(run):
    config = json.loads((run / "config.json").read_text())
    precision = config["environment"]["precision"]
    amp = config["run"]["amp"]
    if not amp:
        assert precision == "float32 (--no-amp)"
    else:  # the fixture's run is a CPU run: float32, unless this CPU has bf16 hardware
        assert precision in ("float32 (this cpu has no fast bf16, so --amp changes nothing)",
                             "bf16 autocast for the models a probe measured faster with it (each model's "
                             "precision.json), float32 otherwise")
    _, page = page_of(run)
    [row] = [r for r in page.find("tr") if r["text"].startswith("amp")]
    assert row["text"] == f"amp{amp} → {precision}"


def test_amp_on_a_cpu_without_bf16_is_said_to_change_nothing(tmp_path):
    from cqdkit.reporting import Reporter
    from cqdkit.testing.distillers import TINY_RUN
    from cqdkit.train.config import RunConfig
    from cqdkit.train.experiment import Experiment

    def precision(**changes) -> str:
        config = RunConfig(**{**TINY_RUN, **changes})
        return Experiment(config, tmp_path, reporter=Reporter.silent()).describe()["environment"]["precision"]

    assert precision(amp=True) == "float32 (this cpu has no fast bf16, so --amp changes nothing)"  # conftest.py
    assert precision(amp=False) == "float32 (--no-amp)"


def test_every_image_is_a_png_of_the_right_size(run):
    import matplotlib.image

    _, page = page_of(run)
    sources = [img["attrs"]["src"] for img in page.find("img")]
    assert sources[0] == "curves.png" and sources[-1] == "per-class.png"
    examples = [s for s in sources if s.startswith("examples/")]
    assert len(examples) == 2 * 5 and len(page.find("div", **{"class": "example"})) == 5
    classes = len(json.loads((run / "b" / "model.json").read_text())["classes"])
    for source in sources:
        path = run / "report" / source
        assert path.read_bytes().startswith(PNG_SIGNATURE), source
        pixels = matplotlib.image.imread(path)
        if source == "curves.png":
            assert pixels.shape[:2] == (340, 1450)  # 14.5 x 3.4 inches at 100 dpi: five panels in a row
        elif source == "per-class.png":
            assert pixels.shape[:2] == (round(100 * (1.4 + classes * (0.16 * 2 + 0.12))), 800)  # B and A+CQD
        else:
            assert pixels.shape == (32, 32, 3), source  # the view itself, pixel for pixel


def test_the_figures_draw_one_panel_per_quantity_and_one_line_per_model(run):
    from cqdkit.report import read_folder
    from cqdkit.report.figures import CURVE_PANELS, curves_figure

    folder = read_folder(run)
    figure = curves_figure(folder.logs, {m: m for m in folder.models})
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == [title for _, title in CURVE_PANELS]
    assert [len(axis.lines) for axis in axes] == [3, 3, 1, 1, 3]  # the distillation term, its KL: A+CQD only


def test_the_results_in_the_page_are_those_of_results_json(run, tmp_path):
    from cqdkit.report import write_report

    # The real run, and a copy whose results.json gives every number its own value (a tiny run often
    # scores the same on x and z), so a number shown in the wrong place cannot pass.
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.safetensors", "report"))
    results = results_of(copy)
    for k, scores in enumerate(results["models"].values()):
        for j, key in enumerate(("test_x", "test_z", "test_x_nll", "test_z_nll", "distill_gradient_ratio")):
            if key in scores:
                scores[key] = 0.1 * (k + 1) + 0.01 * (j + 1) + 1e-9
    results["gain"] = results["models"]["a-cqd"]["test_z"] - results["models"]["b"]["test_z"]
    (copy / "results.json").write_text(json.dumps(results))
    write_report(copy)
    for folder in (run, copy):
        _, page = page_of(folder)
        results = results_of(folder)
        rows = page.rows("results")
        assert [row[1]["text"] for row in rows] == ["a", "b", "a-cqd"]
        for row in rows:
            scores = results["models"][row[1]["text"]]
            for cell, key in zip(row[4:8], ("test_x", "test_z", "test_x_nll", "test_z_nll")):
                assert float(cell["attrs"]["data-value"]) == scores[key], key
            for cell, key in zip(row[4:6], ("test_x", "test_z")):
                assert cell["text"] == f"{100 * scores[key]:.1f}"
        [gain] = page.find("strong", id="gain")
        assert float(gain["attrs"]["data-value"]) == results["gain"]
        assert gain["text"] == f"{100 * results['gain']:+.1f} points"
        [ratio] = page.find("span", id="gradient-ratio")
        assert float(ratio["attrs"]["data-value"]) == results["models"]["a-cqd"]["distill_gradient_ratio"]
        [distillation] = page.find("p", id="distillation")
        chosen = results["distillation"]
        assert f"T = {chosen['temperature']:g}, λ = {chosen['lambda']:g} (" in distillation["text"]
        cards = [float(e["attrs"]["data-value"]) for e in page.elements
                 if e["tag"] == "div" and e["attrs"].get("class", "").split()[:1] == ["value"]]
        m = results["models"]
        assert cards == [m["a"]["test_x"], m["a"]["test_z"], m["b"]["test_z"], m["a-cqd"]["test_z"], results["gain"]]


def test_per_class_accuracies_equal_a_fresh_computation(run, manager):
    import torch
    from torch.utils.data import DataLoader

    from cqdkit.export import load_trained
    from cqdkit.train.config import RunConfig
    from cqdkit.train.experiment import Experiment

    experiment = Experiment(RunConfig.load(run / "config.json"), run)
    classes = experiment.data.classes
    expected = {}
    for method in ("b", "a-cqd"):
        classifier = load_trained(run / method / "model.safetensors").module
        hits, labels = [], []
        with torch.no_grad():
            for batch in DataLoader(experiment.test_set, batch_size=5):
                hits.append(classifier(batch.z).argmax(1) == batch.label)
                labels.append(batch.label)
        hits, labels = torch.cat(hits).numpy(), torch.cat(labels).numpy()
        expected[method] = [hits[labels == c].mean() for c in range(len(classes))]
        assert hits.mean() == pytest.approx(results_of(run)["models"][method]["test_z"])
    _, page = page_of(run)
    rows = page.rows("per-class")
    assert [row[0]["text"] for row in rows] == classes
    for c, row in enumerate(rows):
        assert int(row[1]["text"]) == 4
        assert float(row[2]["attrs"]["data-value"]) == expected["b"][c]
        assert float(row[3]["attrs"]["data-value"]) == expected["a-cqd"][c]
        assert float(row[4]["attrs"]["data-value"]) == pytest.approx(expected["a-cqd"][c] - expected["b"][c])


def test_examples_show_the_test_views_and_the_models_predictions(run, manager):
    import matplotlib.image
    import torch

    from cqdkit.export import load_trained
    from cqdkit.train.config import RunConfig
    from cqdkit.train.experiment import Experiment

    experiment = Experiment(RunConfig.load(run / "config.json"), run)
    classes = experiment.data.classes
    models = {m: load_trained(run / m / "model.safetensors").module for m in ("a", "b", "a-cqd")}
    _, page = page_of(run)
    cards = [i for i, e in enumerate(page.elements) if e["tag"] == "div" and e["attrs"].get("class") == "example"]
    assert [int(page.elements[i]["attrs"]["data-index"]) for i in cards] == [0, 4, 8, 1, 5]  # one per class first
    [per_class] = [i for i, e in enumerate(page.elements) if e["tag"] == "h2" and e["text"] == "Per-class accuracy"]
    for start, end in zip(cards, cards[1:] + [per_class]):
        elements = page.elements[start:end]
        sample = experiment.test_set[int(elements[0]["attrs"]["data-index"])]
        assert elements[1]["text"] == classes[sample.label]
        x_png, z_png = (e["attrs"]["src"] for e in elements if e["tag"] == "img")
        for png, view in ((x_png, sample.x), (z_png, sample.z)):
            shown = np.round(matplotlib.image.imread(run / "report" / png) * 255).astype(np.uint8)
            assert np.array_equal(shown, view.permute(1, 2, 0).numpy())
        with torch.no_grad():
            expected = [f"A on x: {classes[models['a'](sample.x[None]).argmax()]}",
                        f"B on z: {classes[models['b'](sample.z[None]).argmax()]}",
                        f"A+CQD on z: {classes[models['a-cqd'](sample.z[None]).argmax()]}"]
        shown = [e["text"][2:] for e in elements if e["tag"] == "li"]
        assert shown == expected
        assert [e["text"][0] for e in elements if e["tag"] == "li"] == [
            "✓" if text.endswith(": " + classes[sample.label]) else "✗" for text in expected]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab_.- <&>\"", max_size=30))
def test_class_names_wrap_between_words_and_are_never_cut(name):
    from cqdkit.report.html import breakable, escape

    shown = str(breakable(name))
    assert shown.replace("<wbr>", "") == escape(name)  # the whole name, escaped, nothing added or lost
    assert all(shown[i - 1] in "_.-" for i in range(len(shown)) if shown.startswith("<wbr>", i))


def test_strings_from_files_are_escaped(run):
    text, page = page_of(run)
    classes = json.loads((run / "b" / "model.json").read_text())["classes"]
    assert all("<b>" in name and "&" in name for name in classes)
    assert "<b>" not in text and "<run>" not in text  # never markup
    assert "&lt;b&gt;" in text and "&lt;run&gt; &amp; &quot;co&quot;" in text
    shown = "".join(page.text)
    for name in classes:
        assert name in shown  # the browser shows the exact name
    [title] = page.find("title")
    assert RUN_NAME in title["text"]
    for example in page.find("div", **{"class": "class"}):
        assert example["attrs"]["title"].removeprefix("true class: ") in classes  # attributes too
        assert example["text"] in classes  # the whole name on the card
    assert "ellipsis" not in text  # no name is cut short


def test_a_run_whose_dataset_is_missing_here_still_gets_a_report(run, tmp_path):
    from cqdkit.report import write_report

    previous = set_plugin_manager(PluginManager(autoload=False))  # the odd-names dataset is unknown here
    try:
        index = write_report(run, tmp_path / "elsewhere")
    finally:
        set_plugin_manager(previous)
    text, page = page_of_file(index)
    assert "the test split could not be rebuilt here (unknown dataset 'odd-names'" in " ".join(page.text)
    assert [img["attrs"]["src"] for img in page.find("img")] == ["curves.png"]
    assert [unquote(a["attrs"]["href"]) for a in page.find("a")] == [
        os.path.relpath(run / name, index.parent) for name in ("results.json", "config.json")]
    assert all(" " not in a["attrs"]["href"] and '"' not in a["attrs"]["href"] for a in page.find("a"))


def page_of_file(index: Path) -> tuple[str, Page]:
    text = index.read_text()
    return text, Page(text)


def test_the_table_page_shows_table_json_and_the_settings(table):
    import matplotlib.image

    result = json.loads((table / "table.json").read_text())
    text, page = page_of(table)
    [image] = page.find("img")
    pixels = matplotlib.image.imread(table / "report" / image["attrs"]["src"])
    assert pixels.shape[:2] == (400, round(100 * (1.9 * 1 + 2.4)))  # one degradation
    rows = page.rows("table1")
    assert [row[0]["text"] for row in rows] == result["rows"]
    for row in rows:
        stats = result["table"]["gray"][row[0]["text"]]
        cell = row[1]
        if stats is None:
            assert cell["text"] == "—"
        elif math.isnan(stats["mean"]):
            assert cell["attrs"]["data-value"] == "nan"
        else:
            assert float(cell["attrs"]["data-value"]) == stats["mean"]
            percent = row[0]["text"] != "gap closed by A+CQD"
            scale, digits = (100, 1) if percent else (1, 2)
            assert cell["text"] == f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
    settings = page.rows("settings-table")
    [gray] = settings
    chosen = result["settings"]["gray"]
    assert gray[3]["text"] == f"T = {chosen['cqd']['temperature']:g}, λ = {chosen['cqd']['lam']:g}"
    assert gray[4]["text"] == f"T = {chosen['a-cqd']['temperature']:g}, λ = {chosen['a-cqd']['lam']:g}"
    assert [a["attrs"]["href"] for a in page.find("a")] == ["../table.md", "../table.csv", "../table.json"]


def test_the_table_figure_has_one_bar_per_row_and_degradation():
    from cqdkit.report.figures import table_figure

    table = json.loads((ROOT / "benchmarks" / "results" / "table1.json").read_text())
    axis = table_figure(table).axes[0]
    bars = [c for c in axis.containers if type(c).__name__ == "BarContainer"]
    assert [c.get_label() for c in bars] == ["A/A", "A/B", "B/B", "A→B/B", "CQD/B", "A+CQD/B"]
    means = [100 * table["table"][d][c.get_label()]["mean"] for c in bars for d in table["degradations"]]
    assert [bar.get_height() for c in bars for bar in c] == pytest.approx(means)
    assert [t.get_text() for t in axis.get_xticklabels()] == table["degradations"]


def test_report_refuses_a_folder_that_is_neither_run_nor_table(tmp_path):
    (tmp_path / "config.json").write_text('{"run": {}}')
    result = invoke("report", str(tmp_path))
    assert result.exit_code == 2
    assert "no results.json: the run has not finished" in " ".join(result.stderr.split())
    (tmp_path / "config.json").unlink()
    assert "not a cqdkit run folder" in " ".join(invoke("report", str(tmp_path)).stderr.split())


@pytest.mark.parametrize("damage, named", [
    ("log", "b/log.jsonl: not UTF-8 text"),
    ("models", "results.json: field models must be an object of each model's scores, got [\"b\"]"),
])
def test_a_run_folder_with_a_damaged_file_is_one_line_naming_it(tmp_path, damage, named):
    (tmp_path / "config.json").write_text('{"run": {}}')
    models = ["b"] if damage == "models" else {"b": {"test_x": 0.5, "test_z": 0.4}}
    (tmp_path / "results.json").write_text(json.dumps({"models": models, "method": "b"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "log.jsonl").write_bytes(b"\xff\xfe not text\n" if damage == "log" else b"")
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--examples", "0"])
    assert result.exit_code == 2, (result.output, result.exception)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and named in line
    assert sorted(path.name for path in tmp_path.iterdir() if path.name not in (LOCK_NAME, OWNED_LIST)) == \
        ["b", "config.json", "results.json"]  # (a folder from before the list of cqdkit's files gets one)


def test_importing_the_report_package_is_cheap():
    code = "import sys, cqdkit.report; print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]"


def test_benchmarks_plot_their_table_with_the_library():
    script = (ROOT / "benchmarks" / "reproduce_results.sh").read_text()
    assert "plot_table.py" not in script and not (ROOT / "benchmarks" / "plot_table.py").exists()
    assert 'cqdkit report "$OUT/table1"' in script
    assert 'cp "$OUT/table1/report/table.png" docs/images/table1.png' in script


def test_the_report_says_when_validation_switched_distillation_off():
    from cqdkit.report.pages import _distillation

    off = {"method": "cqd", "loss": "softce", "chosen_by": "validation", "distillation_helps": False, "terms": []}
    text = str(_distillation({"models": {}, "distillation": off}, {}))
    assert "did not help on validation" in text and "the student is its baseline" in text
    on = {**off, "distillation_helps": True, "terms": [{"spec": "softce:temperature=2,lambda=5"}], "temperature": 2.0,
          "lambda": 5.0}
    text = str(_distillation({"models": {}, "distillation": on}, {}))
    assert "T = 2, λ = 5" in text and "chosen on the validation split" in text and "did not help" not in text
