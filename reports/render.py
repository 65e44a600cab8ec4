"""Jinja2 rendering of report.md and report.html (templates in reports/templates).

HTML autoescaping is on: every model text, prompt and label goes through it. Plotly figures travel as
JSON inside `<script type="application/json">` with `<`, `>` and `&` written as \\u escapes, so no text
inside a figure can close the script element. Markdown puts model text in code fences longer than any
run of backticks inside it, so a response cannot break out of its block.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def pct(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}"


def signed_pct(value: float | None) -> str:
    text = pct(value)
    return text if text == "n/a" or text.startswith("-") else f"+{text}"


def ci(low: float | None, high: float | None) -> str:
    return "n/a" if low is None or high is None else f"[{pct(low)}, {pct(high)}]"


def number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def pvalue(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def cell(value: Any) -> str:
    """A Markdown table cell: no line breaks, pipes escaped."""
    return re.sub(r"\s*\n\s*", " ", str(value)).replace("|", "\\|")


def fence(text: str, info: str = "text") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{info}\n{text}\n{marks}"


def script_json(payload: Any) -> Any:
    """JSON safe inside <script>; marked safe so that autoescape leaves it alone (entities are not
    decoded inside a script element)."""
    from markupsafe import Markup

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "x"


def render(name: str, context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=pct,
        pvalue=pvalue,
        signed_pct=signed_pct,
        ci=ci,
        number=number,
        cell=cell,
        fence=fence,
        anchor=anchor,
    )
    env.globals["script_json"] = script_json
    return env.get_template(name).render(**context)
