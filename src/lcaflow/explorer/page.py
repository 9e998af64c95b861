"""One self-contained HTML page: the Vega libraries inlined (from the vl-convert-python package: the page
makes no network request), the data as one JSON block, the loader script, and plain HTML tables."""

from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.facts { color: #555; } .absent { background: #fff6e0; border-left: 4px solid #e69f00; padding: 0.4em 1em; }
table.plain { border-collapse: collapse; font-size: 13px; } .plain td, .plain th { border: 1px solid #ddd; padding: 2px 8px; }
.plain th { background: #f3f3f3; text-align: left; } #controls { position: sticky; top: 0; z-index: 2; background: #fffe; padding: 0.4em 0; border-bottom: 1px solid #ddd; }
#controls:empty { display: none; } .vega-bind { display: inline-block; margin-right: 2em; }
"""

# a script that fails before the views are drawn marks the page (the browser tests wait for data-rendered)
ON_ERROR = 'window.addEventListener("error", () => { document.body.dataset.rendered = "error"; });'


@functools.cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script, for the Vega-Lite version Altair writes."""
    import altair as alt
    import vl_convert

    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return vl_convert.javascript_bundle(vl_version=version)


def library_versions() -> str:
    import altair as alt
    import vl_convert

    return (
        f"Vega {vl_convert.get_vega_version()}, Vega-Lite {alt.SCHEMA_VERSION.lstrip('v')}, "
        f"vega-embed {vl_convert.get_vega_embed_version()}, inlined from vl-convert-python {vl_convert.__version__}"
    )


def _script_safe(text: str) -> str:
    """Script text that cannot end the <script> element it sits in (`</script` written `<\\/script`, which
    means the same in JavaScript strings, regular expressions and JSON)."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def table_html(header: list[str], rows: list[list], cls: str = "plain") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def absent_html(absent: list[str]) -> str:
    if not absent:
        return ""
    items = "".join(f"<li>{html.escape(a)}</li>" for a in absent)
    return f'<div class="absent" id="absent"><b>Not on this page:</b><ul>{items}</ul></div>'


def page(title: str, facts: str, spec: dict, tables: dict, sections: list[tuple[str, str]], absent: list[str]) -> str:
    """The whole page as a string: `sections` are (heading, HTML) shown under the views."""
    payload = _script_safe(json.dumps({"spec": spec, "tables": tables}, separators=(",", ":"), allow_nan=False))
    loader = resources.files(__package__).joinpath("explorer.js").read_text()
    parts = "".join(f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<script>{ON_ERROR}</script>\n<h1>{html.escape(title)}</h1>\n"
        f'<p class="facts">{facts}</p>\n{absent_html(absent)}\n<div id="controls"></div>\n<div id="views"></div>\n{parts}\n'
        f'<p class="facts">Drawn offline with {html.escape(library_versions())}.</p>\n'
        f'<script type="application/json" id="lcaflow-data">{payload}</script>\n'
        f'<script type="module">{_script_safe(vega_bundle())}</script>\n'
        f'<script type="module">{loader}</script>\n</body></html>\n'
    )
