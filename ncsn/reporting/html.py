"""HTML building blocks of the report: escaping, embedded images, tables, sections, the page.

Everything is inline (CSS, images as base64 ``data:`` URIs): the page makes no request,
so it opens offline, from an e-mail or an MLflow artifact download alike.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
SMALL_IMAGE = 480  # images narrower than this (digit grids) are shown at twice their size, pixelated


def esc(value: Any) -> str:
    """Text → HTML-safe text."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A value for a table cell: floats to 4 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def missing(stage: str, what: str = "") -> str:
    """The line shown in place of an input that does not exist."""
    detail = f"{esc(what)}: " if what else ""
    return f'<p class="missing">{detail}not available (run dvc repro {esc(stage)})</p>'


def image_data(data: bytes, mime: str, alt: str, *, natural_width: int | None = None) -> str:
    """An ``<img>`` whose source is the bytes themselves."""
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    style = ""
    if natural_width is not None and natural_width < SMALL_IMAGE:
        style = f' style="width:{2 * natural_width}px" class="pixelated"'
    return f'<img src="{uri}" alt="{esc(alt)}"{style}>'


def image_file(path: Path, alt: str) -> str:
    """An ``<img>`` embedding the file at ``path`` (PNG, GIF or JPEG)."""
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path}: unknown image type")
    width = None
    try:
        from PIL import Image

        with Image.open(path) as im:
            width = im.width
    except (OSError, ValueError):
        pass
    return image_data(path.read_bytes(), mime, alt, natural_width=width)


def figure(body: str, caption: str = "") -> str:
    """``<figure>`` with an optional caption (the caption is HTML)."""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{body}{cap}</figure>"


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, *, cls: str = "") -> str:
    """A table of escaped, formatted cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{cls_attr}>" + (f"<thead><tr>{head}</tr></thead>" if head else "") + f"<tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Section:
    """One ``<section id=...>`` of the report; ``body`` is HTML."""

    id: str
    title: str
    body: str

    def render(self) -> str:
        return f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2>\n{self.body}\n</section>'


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 24px 48px; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-bottom: 0.3em; }
nav ol { columns: 3; font-size: 0.95em; } nav a { text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td { font-variant-numeric: tabular-nums; }
.params { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 0 24px; }
.params table { width: 100%; }
figure { margin: 12px 0 24px; } figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
img.pixelated { image-rendering: pixelated; }
.missing { color: #a33; font-style: italic; }
.note { background: #f7f7f2; border-left: 4px solid #cc9; padding: 6px 10px; font-size: 0.9em; }
.meta { color: #555; }
"""


def page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole document: title, table of contents, sections."""
    toc = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{intro}\n"
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
    )
