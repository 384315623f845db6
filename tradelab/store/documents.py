"""The trade store's small documents: ``meta:{name}`` keys holding MessagePack dicts.

:meth:`tradelab.store.TradeStore.put_meta` and :meth:`~tradelab.store.TradeStore.get_meta`
keep things such as the collector's status next to the trades, so every process that reads
the store sees them. This module checks the names and sizes and converts the values; the store
does the reading and writing. Pure code, no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import msgpack

from tradelab.exceptions import InvalidParameterError

__all__ = ["MAX_DOCUMENT_BYTES", "document_key", "pack_document", "unpack_document"]

MAX_DOCUMENT_BYTES = 1 << 20
"""The largest packed document :func:`pack_document` accepts (1 MiB)."""

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def document_key(name: object) -> bytes:
    """The key of the document ``name`` (1-100 letters, digits, ``_``, ``.``, ``-``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError(
            f"meta name must be 1-100 characters of letters, digits, '_', '.', '-', got {name!r}"
        )
    return b"meta:" + name.encode()


def pack_document(name: str, value: object) -> bytes:
    """``value`` (a dict) as the MessagePack bytes stored under ``name``; refuses anything that
    is not a dict, not serialisable or larger than :data:`MAX_DOCUMENT_BYTES` packed."""
    if not isinstance(value, dict):
        raise InvalidParameterError(f"meta value must be a dict, got {type(value).__name__}")
    try:
        raw: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidParameterError(
            f"meta {name!r} is not MessagePack-serialisable: {exc}"
        ) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InvalidParameterError(
            f"meta {name!r} is {len(raw)} bytes packed; the limit is {MAX_DOCUMENT_BYTES}"
        )
    return raw


def unpack_document(raw: bytes) -> dict[str, Any]:
    """The dict a stored document holds."""
    doc: dict[str, Any] = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    return doc
