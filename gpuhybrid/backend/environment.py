"""Reading ``GPUHYBRID_*`` environment variables: a value outside what a variable allows raises a
``ConfigurationError`` that names the variable, the value and what is allowed, where it is read."""
from __future__ import annotations

import os

from ..errors import GhError

_BYTE_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


class ConfigurationError(GhError, ValueError):
    """An environment variable set to a value gpuhybrid does not accept."""


def env_int(name: str, default: int, minimum: int) -> int:
    """The integer in ``$name`` (``default`` when unset or empty), at least ``minimum``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ConfigurationError(f"{name}={text!r} is not allowed: use an integer >= {minimum} "
                                 f"(or unset it for the default, {default})")
    return value


def env_flag(name: str, default: bool) -> bool:
    """The switch in ``$name``: ``1`` (on) or ``0`` (off); ``default`` when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if text not in ("0", "1"):
        raise ConfigurationError(f"{name}={text!r} is not allowed: use 1 (on) or 0 (off), or unset it for "
                                 f"the default ({int(default)})")
    return text == "1"


def env_bytes(name: str, default: int) -> int:
    """A size in bytes in ``$name``: an integer >= 0, optionally with a K, M, G or T suffix (powers of
    1024), e.g. ``512M``; ``default`` when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    digits, unit = (text[:-1], text[-1].lower()) if text[-1].lower() in _BYTE_UNITS else (text, "")
    if not digits.isdigit():
        raise ConfigurationError(f"{name}={text!r} is not allowed: use a size in bytes, an integer >= 0 "
                                 f"optionally followed by K, M, G or T (e.g. 512M), or unset it for the "
                                 f"default ({default} bytes)")
    return int(digits) * _BYTE_UNITS[unit]
