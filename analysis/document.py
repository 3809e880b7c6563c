"""A minimal document model rendered twice: Markdown (figures linked) and self-contained HTML
(figures embedded as base64 PNG). Keeps the report free of a Markdown library."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, df: pd.DataFrame) -> None:
        if len(df):
            self.blocks.append(("table", df.reset_index(drop=True)))

    def image(self, path: Path, relative: str, caption: str) -> None:
        self.blocks.append(("img", Path(path), relative, caption))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + block[2], ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                out += _markdown_table(block[1]) + [""]
            elif kind == "img":
                out += [f"![{block[3]}]({block[2]})", "", f"*{block[3]}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
            elif kind == "p":
                out.append(f"<p>{e(block[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                out.append(_html_table(block[1]))
            elif kind == "img":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img alt="{e(block[3])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(block[3])}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out)


_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    "img{max-width:100%}figcaption{font-size:0.85em;color:#555}"
)


def cell(value) -> str:
    """One table cell: floats with 3 significant digits, missing as an empty cell."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return "inf" if np.isposinf(value) else "-inf" if np.isneginf(value) else f"{value:.3g}"
    return str(value)


def _markdown_table(df: pd.DataFrame) -> list[str]:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(str(c)) for c in df.columns) + " |"]
    lines.append("|" + "---|" * len(df.columns))
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(cell(v)) for v in row) + " |")
    return lines


def _html_table(df: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
