"""The report page: one self-contained ``index.html`` (inline CSS and a small inline script to sort
tables; images and audio are files beside it, referenced by relative paths — nothing from the
network)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from nablafx.plotting.common import Figure
from nablafx.plotting.listening import Clip

CSS = """
:root { --fg: #1d232b; --muted: #5b6570; --line: #d8dde3; --bg: #ffffff; --panel: #f5f7f9; --accent: #2f6db5; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .sub { color: var(--muted); }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line); padding: 6px 32px; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 8px 32px 48px; max-width: 1500px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { margin-bottom: 4px; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; font-family: ui-monospace, monospace; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: var(--panel); cursor: default; }
caption { caption-side: bottom; text-align: left; padding-top: 4px; font-size: 13px; max-width: 1000px; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:after { content: " \\2195"; color: #aab; font-size: 11px; }
figure { margin: 12px 0 28px; }
figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); max-width: 1100px; font-size: 14px; }
figcaption b { color: var(--fg); }
.note { color: var(--muted); font-style: italic; }
.players { display: grid; grid-template-columns: max-content repeat(2, minmax(260px, 1fr)); gap: 6px 14px; align-items: center; }
.players audio { width: 100%; height: 32px; }
.players .h { font-weight: 600; color: var(--muted); }
pre { background: var(--panel); padding: 8px; overflow-x: auto; font-size: 12px; }
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
        var fx = parseFloat(x), fy = parseFloat(y);
        if (!isNaN(fx) && !isNaN(fy)) return dir * (fx - fy);
        if (x === '' && y !== '') return 1; if (y === '' && x !== '') return -1;
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


@dataclass
class Section:
    """A titled part of the page: ``html`` blocks first (tables, notes), then captioned figures."""

    id: str
    title: str
    intro: str = ""
    blocks: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def esc(x) -> str:
    return html.escape("" if x is None else str(x))


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def table(header: list[str], rows: list[list], sortable: bool = False, caption: str = "") -> str:
    """An HTML table; numeric cells carry their raw value in ``data-v`` for sorting."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f"<td class='n' data-v='{v!r}'>{esc(fmt(v))}</td>" if num else f"<td>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption class='note'>{esc(caption)}</caption>" if caption else ""
    cls = " class='sortable'" if sortable else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv(items: list[tuple[str, str]]) -> str:
    return "<dl class='kv'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def figure_html(fig: Figure) -> str:
    return (f"<figure id='{esc(fig.file.split('/')[-1].rsplit('.', 1)[0])}'><img src='{esc(fig.file)}' "
            f"alt='{esc(fig.title)}'><figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>")


def players_html(clips: list[Clip]) -> str:
    """One block per passage: the dry input, then target and prediction side by side per setting."""
    out = []
    names = list(dict.fromkeys(c.name for c in clips))
    for name in names:
        group = [c for c in clips if c.name == name]
        dry = next((c for c in group if c.role == "dry"), None)
        rows = [f"<h3>{esc(name)}</h3><div class='players'>"]
        if dry is not None:
            rows.append(f"<span>dry input</span><audio controls preload='metadata' src='{esc(dry.file)}'></audio><span></span>")
        rows.append("<span class='h'>knob setting</span><span class='h'>target (device)</span>"
                    "<span class='h'>prediction (model)</span>")
        codes = list(dict.fromkeys(c.code for c in group if c.role != "dry"))
        for code in codes:
            tgt = next(c for c in group if c.code == code and c.role == "target")
            pred = next(c for c in group if c.code == code and c.role == "prediction")
            rows.append(f"<span>{esc(tgt.label)}</span>"
                        f"<audio controls preload='metadata' src='{esc(tgt.file)}'></audio>"
                        f"<audio controls preload='metadata' src='{esc(pred.file)}'></audio>")
        rows.append("</div>")
        out.append("".join(rows))
    return "".join(out)


def render_page(title: str, subtitle: str, header_blocks: list[str], sections: list[Section]) -> str:
    nav = "".join(f"<a href='#{esc(s.id)}'>{esc(s.title)}</a>" for s in sections)
    parts = []
    for s in sections:
        parts.append(f"<section id='{esc(s.id)}'><h2>{esc(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p>{esc(s.intro)}</p>")
        parts.extend(s.blocks)
        parts.extend(figure_html(f) for f in s.figures)
        parts.append("</section>")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><div class='sub'>{esc(subtitle)}</div>{''.join(header_blocks)}</header>"
            f"<nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<script>{SORT_JS}</script></body></html>\n")
