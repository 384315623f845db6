"""The optional ``scale`` extra (``pip install 'tradelab[scale]'``), imported only when used.

``import tradelab`` and ``import tradelab.scale`` never need ``deltalake`` or
``dask[distributed]``: every function of :mod:`tradelab.scale` that reads or writes a Delta table
or talks to a cluster imports them through :func:`require` at call time, so a machine without the
extra gets one line saying how to install it (:class:`ScaleExtraMissingError`), never an
``ImportError`` traceback.

Also here: the two errors of the package, and the check of a table URI (a local path or an
object-store URL; credentials come from the environment, the way ``deltalake`` reads them).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tradelab.exceptions import ConfigurationError, InvalidParameterError, StorageError

__all__ = [
    "INSTALL_HINT",
    "REMOTE_SCHEMES",
    "ScaleExtraMissingError",
    "TableError",
    "check_storage_options",
    "env_pause",
    "is_local",
    "normalize_uri",
    "one_line",
    "require",
]

INSTALL_HINT = "pip install 'tradelab[scale]'"
"""How to install what :mod:`tradelab.scale` needs."""

REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
"""Object-store URL schemes a table URI may use (besides a local path or ``file://``)."""


class ScaleExtraMissingError(ConfigurationError):
    """``deltalake`` or ``dask[distributed]`` is not installed: the ``scale`` extra is needed."""


class TableError(StorageError):
    """The Delta table could not be read or written (storage, permissions, a corrupt log)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(exc: BaseException) -> str:
    """An error from delta-rs, Polars or the cluster as one readable line: terminal colour codes
    (delta-rs prints ``\x1b[31m↳\x1b[0m`` between causes) and line breaks removed, at most 300
    characters."""
    text = " ".join(_ANSI.sub("", str(exc)).replace("↳", "-").split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def require(module: str) -> Any:
    """Import ``module`` (``"deltalake"``, ``"distributed"``, ...) or raise
    :class:`ScaleExtraMissingError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ScaleExtraMissingError(
            f"the scale extra is not installed ({module} is missing): {INSTALL_HINT}"
        ) from None


def normalize_uri(uri: object) -> str:
    """The table URI as ``deltalake`` and Polars take it: an absolute local path, or an
    object-store URL unchanged (``s3://bucket/prefix``, ``gs://``, ``az://``, ``abfss://``)."""
    if isinstance(uri, Path):
        uri = str(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidParameterError(
            "uri must be a Delta table location: a local directory or an s3://, gs:// or az:// "
            f"URL, got {uri!r}"
        )
    text = uri.strip()
    if "://" not in text:
        return str(Path(text).expanduser().absolute())
    scheme = urlparse(text).scheme.lower()
    if scheme == "file":
        return str(Path(urlparse(text).path).absolute())
    if scheme not in REMOTE_SCHEMES:
        raise InvalidParameterError(
            f"uri {text!r} has the scheme {scheme!r}; allowed: a local directory, file://, "
            + ", ".join(f"{s}://" for s in REMOTE_SCHEMES)
        )
    if not urlparse(text).netloc:
        raise InvalidParameterError(f"uri {text!r} names no bucket or container")
    return text.rstrip("/")


def is_local(uri: str) -> bool:
    """True for a normalized local path (not an object-store URL)."""
    return "://" not in uri


def check_storage_options(options: object) -> dict[str, str] | None:
    """``storage_options`` as deltalake takes them: None (credentials from the environment) or
    a mapping of strings, e.g. ``{"AWS_ENDPOINT_URL": "http://minio:9000"}``."""
    if options is None:
        return None
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise InvalidParameterError(
            "storage_options must be a dict of strings (e.g. {'AWS_REGION': 'eu-west-1'}) or "
            f"None to read credentials from the environment, got {type(options).__name__}"
        )
    return dict(options)


def env_pause() -> tuple[int, float] | None:
    """The crash-test hook ``TRADELAB_EXPORT_TEST_PAUSE="N,SECONDS"``: pause SECONDS after the
    data files of this process's N-th commit are written and before it is committed (tests kill
    the process there). Unset or malformed: no pause."""
    raw = os.environ.get("TRADELAB_EXPORT_TEST_PAUSE", "")
    try:
        n, seconds = raw.split(",")
        return int(n), float(seconds)
    except ValueError:
        return None
