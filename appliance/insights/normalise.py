"""Statements with their literals stripped, so that one query run with different values reads
as one statement: numbers, strings, placeholders, IN-lists and multi-row VALUES become ``?``."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

STATEMENT_KEYS = ("db.query.text", "db.statement", "db.query.summary")
MAX_STATEMENT = 4000

_STRING = re.compile(r"(?:[eEnN]|[uU]&)?'(?:[^']|'')*'")
_DOLLAR_STRING = re.compile(r"\$(\w*)\$.*?\$\1\$", re.S)
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
_NUMBER = re.compile(r"(?<![\w$.?])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_PLACEHOLDER = re.compile(r"\$\d+|%s|%\(\w+\)s|(?<![:\w]):[A-Za-z_]\w*|@[A-Za-z_]\w*|\?\d*")
_SPACE = re.compile(r"\s+")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_ROWS = re.compile(r"(\(\?\))(?:\s*,\s*\(\?\))+")


@lru_cache(maxsize=4096)
def normalise_statement(statement: str) -> str:
    """``SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'x'`` -> ``SELECT * FROM t WHERE id IN (?) AND name = ?``."""
    text = statement[:MAX_STATEMENT]
    text = _DOLLAR_STRING.sub("?", text)
    text = _STRING.sub("?", text)
    text = _UUID.sub("?", text)
    text = _HEX.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip().rstrip(";").strip()
    text = _LIST.sub("(?)", text)
    text = _ROWS.sub(r"\1", text)
    return text


def statement_of(tags: dict[str, Any] | None) -> str | None:
    """The span's query text, if it names one."""
    if not tags:
        return None
    for key in STATEMENT_KEYS:
        value = tags.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
