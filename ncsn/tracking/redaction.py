"""Keeping secrets out of what MLflow logs: parameters, tags and the logged config.

A value is replaced by ``[redacted]`` when its key looks like a credential (``*TOKEN*``,
``*PASSWORD*``, ``*SECRET*``, ``*KEY*``, ...), or when it contains the value of an environment
variable whose name does; a URL's ``user:password@`` part is redacted on its own.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(r"token|passw|secret|credential|auth|key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_MIN_SECRET_LENGTH = 6  # shorter environment values ("1", "true") would redact everything


def secret_values() -> list[str]:
    """Values of environment variables whose names look like credentials, longest first."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(key: str, value: Any, secrets: list[str] | None = None) -> Any:
    """``value``, or ``[redacted]`` when ``key`` or ``value`` looks secret (see the module docstring)."""
    secrets = secret_values() if secrets is None else secrets
    if _SECRET_NAME.search(key.rsplit(".", 1)[-1]) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        text = _URL_USERINFO.sub(f"{REDACTED}@", value)
        return REDACTED if any(s in text for s in secrets) else text
    if isinstance(value, (list, tuple)):
        return type(value)(redact(key, v, secrets) for v in value)
    if isinstance(value, dict):
        return {k: redact(k, v, secrets) for k, v in value.items()}
    return value


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters (ending in ``...[truncated]``) when longer."""
    suffix = "...[truncated]"
    return text if len(text) <= limit else text[: limit - len(suffix)] + suffix
