"""One self-contained HTML report: tables of figures and the plots, next to metrics.json."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from astroreco import __version__

_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#eee}img{max-width:100%;margin:0.5em 0}
pre{background:#f6f6f6;padding:0.5em;overflow-x:auto}"""


def table_html(rows: list[dict], columns: list[str] | None = None, fmt="{:.4g}") -> str:
    """An HTML table of a list of dicts (numbers formatted with ``fmt``)."""
    if not rows:
        return "<p>(no rows)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            s = fmt.format(v) if isinstance(v, float) else str(v)
            cells.append(f"<td>{html.escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(path, title: str, sections: list[tuple[str, str, list]]) -> Path:
    """Write ``path`` with one section per (heading, html body, [png paths]) entry.

    Images are embedded (base64) so the report is one file that can be mailed around.
    """
    path = Path(path)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
             f"<p>astroreco {__version__}</p>"]
    for heading, body, images in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
        for img in images:
            data = base64.b64encode(Path(img).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(Path(img).name)}' "
                         f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path


def json_safe(obj):
    """``obj`` with numpy scalars made plain and non-finite floats replaced by None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


def write_json(path, data) -> Path:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=float))
    tmp.replace(path)
    return path
