"""One report, two renderings: a self-contained ``report.html`` (inline styles, images as data URIs:
one file you can mail) and ``report.md`` (images as PNG files beside it).

A report is a list of blocks (headings, paragraphs, bullet lists, tables, figures) built by
``analysis.report``; this module only renders them, escaping every string that came from a run.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; } td.key, th.key { text-align: left; }
td.text, th.text { text-align: left; white-space: normal; min-width: 14em; }
td.word, th.word { text-align: left; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: .3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
.scroll { overflow-x: auto; }
.answer { background: #f4f8ff; border-left: 4px solid #4a7bd0; padding: .5em 1em; }
"""


@dataclass
class Table:
    frame: pd.DataFrame  # cells already formatted as strings; the index is the group key
    caption: str = ""
    bold: pd.DataFrame | None = None  # same shape: True where the cell is (tied) best


@dataclass
class Figure:
    png: bytes
    name: str  # file name in the markdown rendering
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append((f"h{level}", text))

    def paragraph(self, text: str, answer: bool = False) -> None:
        self.blocks.append(("answer" if answer else "p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, frame: pd.DataFrame, caption: str = "", bold: pd.DataFrame | None = None) -> None:
        self.blocks.append(("table", Table(frame, caption, bold)))

    def figure(self, png: bytes | Path, name: str, caption: str = "") -> None:
        data = png.read_bytes() if isinstance(png, Path) else png
        self.blocks.append(("figure", Figure(data, name, caption)))

    # -- rendering -------------------------------------------------------------------------------
    def html(self) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, payload in self.blocks:
            if kind in ("h2", "h3"):
                out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(str(payload))}</p>")
            elif kind == "answer":
                out.append(f'<p class="answer">{html.escape(str(payload))}</p>')
            elif kind == "ul":
                items = "".join(f"<li>{html.escape(i)}</li>" for i in payload)
                out.append(f"<ul>{items}</ul>")
            elif kind == "table":
                out.append(_html_table(payload))
            elif kind == "figure":
                uri = base64.b64encode(payload.png).decode("ascii")
                caption = f"<figcaption>{html.escape(payload.caption)}</figcaption>"
                out.append(
                    f'<figure><img alt="{html.escape(payload.name)}" '
                    f'src="data:image/png;base64,{uri}">{caption}</figure>'
                )
        out.append("</body></html>")
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, payload in self.blocks:
            if kind in ("h2", "h3"):
                out += ["#" * int(kind[1]) + f" {payload}", ""]
            elif kind in ("p", "answer"):
                out += [("> " if kind == "answer" else "") + str(payload), ""]
            elif kind == "ul":
                out += [f"- {item}" for item in payload] + [""]
            elif kind == "table":
                out += [_markdown_table(payload), ""]
            elif kind == "figure":
                out += [f"![{payload.caption or payload.name}]({payload.name})", ""]
        return "\n".join(out)

    def write(self, directory: Path) -> list[Path]:
        """``report.html``, ``report.md`` and the figures' PNG files (for the markdown)."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for kind, payload in self.blocks:
            if kind == "figure":
                path = directory / payload.name
                path.write_bytes(payload.png)
                written.append(path)
        (directory / "report.html").write_text(self.html(), encoding="utf-8")
        (directory / "report.md").write_text(self.markdown(), encoding="utf-8")
        return [directory / "report.html", directory / "report.md", *written]


def _cells(table: Table) -> tuple[list[str], list[list[tuple[str, bool]]], int]:
    """Header, rows of (text, bold) and how many leading columns are group keys. Each column is
    read once (a report of thousands of runs has tables of thousands of cells)."""
    frame = table.frame.reset_index()
    keys = len(frame.columns) - len(table.frame.columns)
    header = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=object)
    bold = np.zeros(values.shape, dtype=bool)
    for j, column in enumerate(frame.columns):
        if j >= keys and table.bold is not None and column in table.bold.columns:
            bold[:, j] = [bool(b) for b in table.bold[column].to_numpy()]
    rows = [
        [("" if pd.isna(v) else str(v), bool(b)) for v, b in zip(row, marks, strict=True)]
        for row, marks in zip(values, bold, strict=True)
    ]
    return header, rows, keys


def _prose(cells: list[str]) -> bool:
    """A column of sentences (a claim, the numbers behind a verdict), not of numbers: read from
    the left and wrapped, or a wide table pushes its last columns out of sight."""
    return any(len(text) > 40 and text.count(" ") > 4 for text in cells)


def _kind(cells: list[str]) -> str:
    """How a value column reads: "text" (sentences), "word" (labels, left-aligned) or "" (numbers,
    right-aligned so their digits line up)."""
    if _prose(cells):
        return "text"
    filled = [text for text in cells if text]
    return "word" if filled and not any(_NUMERIC.match(text) for text in filled) else ""


_NUMERIC = re.compile(r"^[-+\u2212]?(\d|\.\d|inf|nan)", re.IGNORECASE)


def _html_table(table: Table) -> str:
    header, rows, keys = _cells(table)
    kinds = [
        "key" if j < keys else _kind([row[j][0] for row in rows]) for j in range(len(header))
    ]
    tag = lambda name, kind: f'<{name} class="{kind}">' if kind else f"<{name}>"  # noqa: E731
    head = "".join(f"{tag('th', kinds[j])}{html.escape(h)}</th>" for j, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for j, (text, bold) in enumerate(row):
            text = html.escape(text)
            text = f"<b>{text}</b>" if bold else text
            cells.append(f"{tag('td', kinds[j])}{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return (
        f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _markdown_table(table: Table) -> str:
    header, rows, _ = _cells(table)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = []
    if table.caption:
        lines += [f"*{table.caption}*", ""]
    lines.append("| " + " | ".join(escape(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in rows:
        cells = [f"**{escape(t)}**" if bold and t else escape(t) for t, bold in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
