"""Jinja2 rendering of report.md and report.html (templates in reports/templates).

HTML autoescaping is on: every model text, prompt and label goes through it. Plotly figures travel as
JSON inside `<script type="application/json">` with `<`, `>` and `&` written as \\u escapes, so no text
inside a figure can close the script element.

Markdown is escaped by default too (CommonMark viewers such as GitHub and VS Code render raw HTML in a
.md file): every `{{ }}` in report.md goes through `md` unless a filter already made it Markdown
(MarkdownText). `md` writes `&`, `<` and `>` as entities and backslash-escapes what would start a code span,
link, image, emphasis or table cell; model text sits in code fences (and inline code in code spans)
longer than any run of backticks inside it, so it cannot break out of its block.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from harness.errors import MissingExtraError

TEMPLATES = Path(__file__).resolve().parent / "templates"


class MarkdownText(str):
    """Text that is Markdown already (report.md does not escape it again). Not markupsafe.Markup: the
    HTML template escapes it like any string, so a filter's output can never become HTML there."""

    __slots__ = ()


# Numbers are formatted by these filters from floats only (a string would fail the format spec), so
# their output needs no escaping: MarkdownText keeps `md` from escaping "[30.0, 90.3]" into "\\[30.0, 90.3\\]".


def pct(value: float | None, digits: int = 1) -> MarkdownText:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MarkdownText("n/a")
    return MarkdownText(f"{100 * value:.{digits}f}")


def signed_pct(value: float | None) -> MarkdownText:
    text = pct(value)
    return text if text == "n/a" or text.startswith("-") else MarkdownText(f"+{text}")


def ci(low: float | None, high: float | None) -> MarkdownText:
    return MarkdownText("n/a" if low is None or high is None else f"[{pct(low)}, {pct(high)}]")


def number(value: float | None, digits: int = 1) -> MarkdownText:
    return MarkdownText("n/a" if value is None else f"{value:,.{digits}f}")


def pvalue(value: float | None) -> MarkdownText:
    return MarkdownText("n/a" if value is None else f"{value:.3g}")


def cell(value: Any) -> str:
    """A one-line value (report.html; report.md uses `md`): no line breaks, pipes escaped."""
    return re.sub(r"\s*\n\s*", " ", str(value)).replace("|", "\\|")


_LINE_BREAK = re.compile(r"\s*[\r\n]\s*")
_MD_PUNCTUATION = re.compile(r"([\\`*\[\]|~])")  # code spans, emphasis, links and images, cells
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # an intraword _ is plain text
_MD_BLOCK_START = re.compile(r"([#+=-]|\d{1,9}(?=[.)]))")  # heading, list, setext, ordered list


def md(value: Any) -> MarkdownText:
    """Text for one line of CommonMark/GFM that renders as that text and never as an element."""
    text = _LINE_BREAK.sub(" ", str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCTUATION.sub(r"\\\1", text)
    return MarkdownText(_MD_UNDERSCORE.sub(r"\\_", text))


def md_line(value: Any) -> MarkdownText:
    """`md` for text that starts a line: a leading '#', '-', '1.' ... stays text, indentation goes."""
    text = str(md(str(value).lstrip()))
    match = _MD_BLOCK_START.match(text)
    if match is None:
        return MarkdownText(text)
    marker = match.group(1)
    if marker[0].isdigit():  # "1." -> "1\." (the digits stay, the list delimiter is escaped)
        return MarkdownText(f"{marker}\\{text[len(marker) :]}")
    return MarkdownText(f"\\{text}")


def md_join(values: Any, separator: str = ", ") -> MarkdownText:
    return MarkdownText(separator.join(md(v) for v in values))


def code(value: Any, in_table: bool = False) -> MarkdownText:
    """An inline code span holding `value` literally (CommonMark shows code spans as text)."""
    text = _LINE_BREAK.sub(" ", str(value))
    if not text:
        return MarkdownText("")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    if in_table:  # GFM splits cells at '|' even inside code spans, unless escaped
        text = text.replace("|", "\\|")
    return MarkdownText(f"{ticks}{pad}{text}{pad}{ticks}")


def fence(text: str, info: str = "text") -> MarkdownText:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return MarkdownText(f"{marks}{info}\n{text}\n{marks}")


def _md_finalize(value: Any) -> Any:
    return value if isinstance(value, MarkdownText) else md(value)


def script_json(payload: Any) -> Any:
    """JSON safe inside <script>; marked safe so that autoescape leaves it alone (entities are not
    decoded inside a script element)."""
    from markupsafe import Markup as HtmlSafe

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return HtmlSafe(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "x"


def render(name: str, context: dict[str, Any]) -> str:
    try:
        import jinja2
    except ImportError:
        raise MissingExtraError(
            "Reports need jinja2, which is not installed.", "pip install 'post-train-harness[site]'"
        ) from None

    markdown = name.endswith(".md")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_md_finalize if markdown else None,
    )
    env.filters.update(
        pct=pct,
        pvalue=pvalue,
        signed_pct=signed_pct,
        ci=ci,
        number=number,
        cell=md if markdown else cell,
        fence=fence,
        anchor=anchor,
        md=md,
        md_line=md_line,
        md_join=md_join,
        code=code,
    )
    env.globals["script_json"] = script_json
    return env.get_template(name).render(**context)
