"""The ``vecpipe`` JSON entry every artifact carries in its Arrow schema metadata.

It records what shapes the content (kind, dim, dtype, metric, model, compression parameters, input
fingerprints, vecpipe version) and nothing that differs between two runs of the same work, so
identical work gives identical bytes. Downstream stages read what they need from it.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from vecpipe import __version__

KEY = b"vecpipe"


def dumps(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=_default).encode()


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot record {type(obj).__name__} in metadata")


def new(kind: str, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"kind": kind, "vecpipe_version": __version__}
    meta.update({k: v for k, v in fields.items() if v is not None})
    return meta


def read(schema: pa.Schema) -> dict[str, Any]:
    """The ``vecpipe`` entry of a schema, or ``{}`` for a table some other tool wrote."""
    raw = (schema.metadata or {}).get(KEY)
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def attach(schema: pa.Schema, meta: dict[str, Any]) -> pa.Schema:
    existing = dict(schema.metadata or {})
    existing[KEY] = dumps(meta)
    return schema.with_metadata(existing)
