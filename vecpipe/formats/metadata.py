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


# What makes two vector sets comparable: (metadata path, how the message names it). Each is compared
# only where both artifacts record it, so tables from other tools (no metadata) still combine.
_MODEL_KEYS = (("sha256", "model"), ("pooling", "pooling"), ("normalize", "normalisation"))


def _model_label(meta: dict[str, Any], key: str) -> str:
    model = meta.get("model") or {}
    if key == "sha256":
        return str(model.get("name") or model.get("sha256", "")[:12])
    if key == "normalize":
        return "L2-normalised vectors" if model.get(key) else "unnormalised vectors"
    return f"{key} {model.get(key)}"


def model_mismatch(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> str | None:
    """Why vectors described by ``a`` and ``b`` do not come from the same model, or ``None``.

    Compares the model's sha256, pooling and normalisation where both record them.
    """
    ma, mb = (a or {}).get("model") or {}, (b or {}).get("model") or {}
    why = fde_mismatch(ma, mb, a_name, b_name) if ma and mb else None
    if why:
        return why
    for key, _label in _MODEL_KEYS:
        va, vb = ma.get(key), mb.get(key)
        if va is not None and vb is not None and va != vb:
            if key == "sha256" and ma.get("name") == mb.get("name"):
                return (f"{a_name}: embedded with {ma.get('name')} (sha256 {str(va)[:12]}) but {b_name} with another "
                        f"file of that name (sha256 {str(vb)[:12]})")
            return f"{a_name}: embedded with {_model_label(a, key)} but {b_name} with {_model_label(b, key)}"
    return None


def _fde_params(model: dict[str, Any]) -> dict[str, Any] | None:
    fde = model.get("fde")
    return {k: v for k, v in fde.items() if k != "role"} if isinstance(fde, dict) else None


def fde_mismatch(ma: dict[str, Any], mb: dict[str, Any], a_name: str, b_name: str) -> str | None:
    """Why two models' entries differ in their fixed-dimensional encodings (vecpipe fde), or ``None``:
    one set encoded and the other not, or encoded with other parameters or another seed."""
    pa_, pb_ = _fde_params(ma), _fde_params(mb)
    if pa_ is None and pb_ is None:
        return None
    if pa_ is None or pb_ is None:
        enc, plain = (a_name, b_name) if pa_ is not None else (b_name, a_name)
        return (f"{enc}: holds fixed-dimensional encodings (vecpipe fde) but {plain} holds plain vectors; "
                "encode both sides with vecpipe fde (queries --like the documents)")
    if pa_ != pb_:
        diff = ", ".join(f"{k} {pa_.get(k)} vs {pb_.get(k)}" for k in sorted(set(pa_) | set(pb_)) if pa_.get(k) != pb_.get(k))
        return (f"{a_name}: encoded with other vecpipe fde parameters than {b_name} ({diff}); "
                "encode the queries with vecpipe fde --role query --like DOC_FDE")
    return None


def check_same_model(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str, fix: str,
                     allow_mismatch: bool = False) -> None:
    """Refuse to combine vectors of two models (``fix`` says what to do instead)."""
    from vecpipe.errors import InputError

    why = model_mismatch(a, b, a_name, b_name)
    if why and not allow_mismatch:
        raise InputError(f"{why}; {fix}, or --allow-mismatch if you mean it")
