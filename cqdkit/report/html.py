"""Small, safe HTML for the report: every string is escaped unless it is :class:`Markup` made here.

Strings read from files (class names, paths, settings, plugin names) reach the page only through
:func:`escape`, :func:`tag` or :func:`table`, so a class called ``<b>&co`` shows as text. The page is one
file with its style sheet inline; images are referenced by relative paths.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The report's style sheet (inline in every page).
CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; padding-bottom: 12px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 6px 0 10px; }
.muted, figcaption { color: var(--muted); font-size: 13px; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
       padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; background: var(--soft); }
.card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 13px; }
.good { color: var(--good); } .bad { color: var(--bad); }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.student td { font-weight: 600; }
figure { margin: 10px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--muted); }
.examples { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 14px; margin: 12px 0; }
.example { border: 1px solid var(--line); border-radius: 8px; padding: 8px; font-size: 12px; }
.example .class { font-weight: 600; margin-bottom: 6px; }
.example .views { display: flex; gap: 6px; }
.example .view { flex: 1; text-align: center; color: var(--muted); }
.example img { width: 100%; height: auto; border-radius: 4px; display: block; }
.example img.small { image-rendering: pixelated; }
.example ul { list-style: none; padding: 0; margin: 8px 0 0; }
.example li { margin: 2px 0; }
.example li .who { color: var(--ink); font-weight: 600; }
.settings { columns: 2 420px; column-gap: 28px; }
.settings table { break-inside: avoid; width: 100%; }
.settings td:first-child { white-space: nowrap; }
footer { margin-top: 36px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 10px; }
""".strip()


#: Lone surrogates: what Python makes of bytes in a file name that are not UTF-8 (``os.fsdecode``).
_SURROGATES = re.compile("[\ud800-\udfff]")


class Markup(str):
    """HTML made by this module: inserted as it is, never escaped again."""


def escape(text: object) -> Markup:
    """``text`` as HTML text (``<``, ``>``, ``&``, quotes escaped; a byte of a non-UTF-8 file name shown as �);
    :class:`Markup` stays as it is."""
    if isinstance(text, Markup):
        return text
    return Markup(html.escape(_SURROGATES.sub("\ufffd", str(text)), quote=True))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """The parts, each escaped unless Markup, one after the other."""
    return Markup(escape(separator).join(escape(part) for part in parts))


def breakable(name: str) -> Markup:
    """A class name that wraps only between its words: after ``_``, ``.`` and ``-`` (``<wbr>``) and at spaces, never
    inside a word, and is never cut (``001.Black_footed_Albatross``)."""
    return join(escape(part) if index % 2 == 0 else Markup(escape(part) + "<wbr>")
                for index, part in enumerate(re.split(r"([_.\-])", name)))


def tag(element: str, content: object | Iterable[object] = "", /, **attributes: object) -> Markup:
    """``<element attributes>content</element>``; attribute names use ``_`` for ``-`` (``data_value``), a trailing
    ``_`` is dropped (``class_``), and None values are left out. Void elements (``img``) take no content."""
    attrs = "".join(f' {key.rstrip("_").replace("_", "-")}="{escape(value)}"'
                    for key, value in attributes.items() if value is not None)
    if element in ("img", "meta", "br", "hr"):
        return Markup(f"<{element}{attrs}>")
    if not isinstance(content, str) and isinstance(content, Iterable):
        content = join(content)
    return Markup(f"<{element}{attrs}>{escape(content)}</{element}>")


@dataclass(frozen=True)
class Cell:
    """A table cell: ``text`` shown, the exact ``value`` it rounds kept in ``data-value``, an optional class
    and tooltip. ``numeric`` cells are right-aligned."""

    text: object
    value: float | None = None
    numeric: bool = True
    css: str | None = None
    title: str | None = None

    def render(self) -> Markup:
        classes = " ".join(c for c in ("num" if self.numeric else None, self.css) if c) or None
        value = None if self.value is None else number_attribute(self.value)
        return tag("td", self.text, class_=classes, data_value=value, title=self.title)


def number_attribute(value: float) -> str:
    """A float as written in ``data-value``: ``repr`` (round-trips exactly), ``nan`` for NaN."""
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(float(value))


def table(header: Sequence[object], rows: Sequence[Sequence[object]], *, numeric: Sequence[bool] | None = None,
          row_classes: Sequence[str | None] | None = None, css: str | None = None) -> Markup:
    """A table: ``header`` texts, ``rows`` of :class:`Cell`, text or Markup; ``numeric`` right-aligns
    columns (for cells given as text)."""
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    head = tag("thead", tag("tr", [tag("th", h, class_="num" if n else None) for h, n in zip(header, numeric)]))
    body = []
    for index, row in enumerate(rows):
        cells = [cell.render() if isinstance(cell, Cell) else tag("td", cell, class_="num" if n else None)
                 for cell, n in zip(row, numeric + [False] * (len(row) - len(numeric)))]
        body.append(tag("tr", cells, class_=row_classes[index] if row_classes else None))
    return tag("table", [head, tag("tbody", body)], class_=css)


def figure(src: str, alt: str, caption: object = "", width: int | None = None) -> Markup:
    """An image (``src`` relative to the page) with a caption."""
    parts = [tag("img", src=src, alt=alt, width=width, loading="lazy")]
    if caption:
        parts.append(tag("figcaption", caption))
    return tag("figure", parts)


def page(title: str, body: Iterable[object]) -> str:
    """A complete, self-contained HTML document (the style sheet inline)."""
    head = join([tag("meta", charset="utf-8"), tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
                 tag("title", title), Markup(f"<style>\n{CSS}\n</style>")])
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body><main>\n{join(body, chr(10))}\n</main></body>\n</html>\n'
