"""What the report and the comparison page share: the jinja2 templates, their filters, the image
embedder and the atomic write of a page.

The templates (``ncsn/reporting/templates/``, package data) extend one layout (``base.html``)
with one stylesheet (``style.css``, inlined) and are rendered with autoescape on: every value
is escaped by jinja, markup lives in the templates only. Images become ``data:`` URIs, so a
page makes no request and opens offline.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

from ncsn.storage.atomic import atomic_write

# Signatures of the image types a page embeds, and the suffixes that name them.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
          (b"\xff\xd8\xff", "image/jpeg"))
_SUFFIX = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a page: numbers to ``digits`` significant digits, lists joined by commas,
    a missing value (None or NaN) as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def duration(seconds: float | None) -> str:
    """``42.1 s``, ``3 min 05 s``, or ``—`` when missing."""
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def percent(value: Any) -> str:
    """A signed percentage (``+12%``) of a fraction, or ``—`` when it is not a finite number."""
    return f"{100 * value:+.0f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


@dataclass(frozen=True)
class Embedded:
    """An image as a page draws it: its ``data:`` URI, the CSS width (None: natural) and whether
    its pixels are kept sharp."""

    uri: str
    width: int | None = None
    pixelated: bool = False


def embed(source: bytes | str | Path, *, enlarge_below: int | None = None, widest: int | None = None) -> Embedded:
    """A PNG, GIF or JPEG (bytes, or the file at a path) as a ``data:`` URI.

    :param enlarge_below: an image narrower than this is drawn at twice its width (pixelated),
        or at ``widest`` when that is less.
    :raises ValueError: when the bytes are no PNG, GIF or JPEG and a path's suffix names none.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and not isinstance(source, bytes):
        mime = _SUFFIX.get(Path(source).suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {source if not isinstance(source, bytes) else 'these bytes'}: "
                         "not a PNG, GIF or JPEG image")
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    if enlarge_below is None:
        return Embedded(uri)
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            natural = image.width
    except (ImportError, OSError):
        return Embedded(uri)
    if natural >= enlarge_below:
        return Embedded(uri)
    shown = 2 * natural if widest is None else min(widest, 2 * natural)
    return Embedded(uri, shown, shown == 2 * natural)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates of ``ncsn/reporting/templates`` with autoescape, the filters ``fmt``,
    ``duration`` and ``percent``, and ``embed`` as a global."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("ncsn.reporting"), autoescape=jinja2.select_autoescape(),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(fmt=fmt, duration=duration, percent=percent)
    env.globals["embed"] = embed
    return env


def render(template: str, context: Mapping[str, Any]) -> str:
    """The page of ``template`` (a file name under ``templates/``) filled with ``context``."""
    return environment().get_template(template).render(context)


def write_file(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`ncsn.storage.atomic.atomic_write`).

    :raises OSError: as the write raised it, naming ``path`` where it named the hidden
        temporary file beside it (a read-only folder, a full disk).
    """
    path = Path(path)
    try:
        return atomic_write(path, lambda f: f.write(data))
    except OSError as err:
        name = Path(err.filename).name if isinstance(err.filename, (str, Path)) else ""
        if name.startswith(f".{path.name}.") and name.endswith(".tmp"):
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise
