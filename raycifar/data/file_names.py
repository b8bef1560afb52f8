"""File names as raycifar writes them into CSV, JSON, Parquet, HTML and messages.

On Linux a file name is bytes; Python reads the bytes that are not UTF-8 (a zip made on
another system: ``caf\\xe9.png`` in Latin-1) as lone surrogates, which no UTF-8 file can hold.
Their one rendering, everywhere: each such byte as the four characters ``\\xNN`` (its two hex
digits, lower case) and every other character as it is, so ``b"caf\\xe9.png"`` is written
``caf\\xe9.png``. Names that are valid UTF-8 are written unchanged. The bytes are recovered
by reading each ``\\xNN`` back as one byte; a name that itself holds a backslash, ``x`` and
two hex digits is the one case the rendering cannot tell apart.
"""

from __future__ import annotations

import codecs
import os


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 as it is (no byte of a non-UTF-8 name in it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str | os.PathLike[str] | bytes) -> str:
    """``text`` (a path, a name, or the raw bytes of one) with every byte that is not UTF-8
    written ``\\xNN`` (see the module doc); valid text unchanged. Never raises."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    text = os.fspath(text)
    if is_utf8(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an undecodable byte (from JSON, say)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


ERRORS = "raycifar-names"  # the codec error handler that writes undecodable bytes as \\xNN


def _as_escapes(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start : err.end]
    return shown(bad), err.end


codecs.register_error(ERRORS, _as_escapes)


def escape_streams(*streams: object) -> None:
    """Make text ``streams`` (stdout, stderr) write a character they cannot encode the way
    :func:`shown` renders it (``\\xNN`` for the bytes of a non-UTF-8 name) instead of raising."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=ERRORS)
            except (ValueError, OSError):  # a closed or detached stream: leave it
                pass
