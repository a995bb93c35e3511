"""One self-contained HTML page: inline CSS, figures embedded as base64 PNG (emailable)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from landlearn.report.markdown import ABSENT, ABSENT_NOTE

_HEADLINE = ("Overall accuracy (OA)", "Mean IoU", "Macro F1", "Cohen's kappa")

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
.sub { color: #57606a; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0 18px; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .k { color: #57606a; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #eaeef2; padding: 4px 12px; text-align: right; }
th { background: #f6f8fa; font-weight: 600; }
th:first-child, td:first-child, table.text th, table.text td { text-align: left; }
tr.absent td { color: #8c959f; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 7px;
          vertical-align: -1px; border: 1px solid rgba(0,0,0,.25); }
.cols { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
figure { margin: 18px 0 8px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 13px; margin-top: 4px; }
.notes { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px; padding: 8px 16px; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa;
       padding: 1px 4px; border-radius: 4px; }
footer { color: #8c959f; font-size: 12px; margin-top: 36px; }
"""


@dataclass
class FigureItem:
    """One figure of the page: its heading, PNG file and a caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class PageContent:
    """Everything the page shows; built by ``landlearn.report.page``."""

    title: str
    subtitle: list[str] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)
    per_class_header: list[str] = field(default_factory=list)
    per_class_rows: list[list[str]] = field(default_factory=list)
    class_colors: list[tuple[int, int, int]] = field(default_factory=list)
    training: list[list[str]] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)
    hparams: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    footer: str = ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: str = "") -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in row)
        body.append(f"<tr>{cells}</tr>")
    rows_html = "".join(body)
    return (
        f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )


def _per_class(content: PageContent) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in content.per_class_header)
    body = []
    for index, row in enumerate(content.per_class_rows):
        absent = any(cell == ABSENT for cell in row[1:])
        swatch = ""
        if index < len(content.class_colors):
            r, g, b = content.class_colors[index]
            swatch = f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>'
        cells = f"<td>{swatch}{escape(row[0])}</td>" + "".join(
            f"<td>{escape(cell)}</td>" for cell in row[1:]
        )
        body.append(f'<tr class="{"absent" if absent else ""}">{cells}</tr>')
    note = ""
    if any('class="absent"' in line for line in body):
        note = f"<p class='sub'>{ABSENT}: {escape(ABSENT_NOTE)}</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"


def _figure(item: FigureItem) -> str:
    data = base64.b64encode(item.path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{escape(item.caption)}</figcaption>" if item.caption else ""
    return (
        f"<h2>{escape(item.title)}</h2><figure>"
        f'<img src="data:image/png;base64,{data}" alt="{escape(item.title)}">{caption}</figure>'
    )


def render_page(content: PageContent) -> str:
    """The full HTML document for ``content``."""
    parts = [f"<h1>{escape(content.title)}</h1>"]
    if content.subtitle:
        parts.append(f'<p class="sub">{" · ".join(escape(s) for s in content.subtitle)}</p>')
    if content.notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in content.notes)
        parts.append(f'<div class="notes"><strong>Notes</strong><ul>{items}</ul></div>')
    if content.summary:
        shown = dict(content.summary)
        cards = "".join(
            f'<div class="card"><div class="v">{escape(shown[k])}</div>'
            f'<div class="k">{escape(k)}</div></div>'
            for k in _HEADLINE
            if k in shown and shown[k] != ABSENT
        )
        parts.append(f"<h2>Test metrics</h2><div class='cards'>{cards}</div>")
        summary = _table(["metric", "value"], content.summary)
        if content.per_class_header:
            per_class = f"<div><h3>Per class</h3>{_per_class(content)}</div>"
            parts.append(f"<div class='cols'><div><h3>Summary</h3>{summary}</div>{per_class}</div>")
        else:
            parts.append(summary)
    elif content.per_class_header:
        parts.append(f"<h2>Per class</h2>{_per_class(content)}")
    if content.training:
        header = ["metric", "last", "best", "best at epoch"]
        parts.append(f"<h2>Training</h2>{_table(header, content.training)}")
    parts.extend(_figure(item) for item in content.figures)
    for title, header, rows in content.tables:
        parts.append(f"<h2>{escape(title)}</h2>{_table(header, rows)}")
    if content.hparams or content.files:
        parts.append("<h2>Run</h2><div class='cols'>")
        if content.hparams:
            settings = _table(["setting", "value"], content.hparams, "text")
            parts.append(f"<div><h3>Key settings</h3>{settings}</div>")
        if content.files:
            parts.append(
                f"<div><h3>Files read</h3>{_table(['file', 'path'], content.files, 'text')}</div>"
            )
        parts.append("</div>")
    if content.footer:
        parts.append(f"<footer>{escape(content.footer)}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="landlearn">'
        f"<title>{escape(content.title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )
