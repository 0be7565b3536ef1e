"""The log Z(d) artifact of ``search --hubness``: computed once per index, bank and beta, kept beside
the index as ``INDEX.vpi.METHOD.logz.parquet`` (ids and log Z, a manifest in its metadata), written
atomically and recomputed only when its index, bank, document vectors or parameters change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import metadata
from vecpipe.pipeline import manifest as manifests

KIND = "hubness"


def artifact_path(index_path: str | Path, method: str) -> Path:
    p = Path(index_path)
    return p.parent / f"{p.name}.{method}.logz.parquet"


def read_bank(path: Path, name: str, loaded: Any, allow_mismatch: bool) -> np.ndarray:
    """The bank's query vectors (float, finite, the index's dimension and model)."""
    from vecpipe.formats.vectors import read_vectors

    bank = read_vectors(path)
    meta = bank.meta or {}
    comp = meta.get("compression")
    if bank.matrix.dtype.kind != "f" or (isinstance(comp, dict) and comp.get("method") not in ("float32", "fp16")):
        raise InputError(f"{name}: the bank holds compressed codes; give the query vectors from vecpipe embed")
    if len(bank.ids) == 0:
        raise InputError(f"{name}: the bank holds no query vectors")
    if bank.matrix.shape[1] != loaded.dim:
        raise InputError(f"{name}: bank vectors have dimension {bank.matrix.shape[1]} but {loaded.name} holds "
                         f"{loaded.dim}-dimensional vectors; embed the bank queries with the index's model")
    metadata.check_same_model(meta, loaded.meta, name, loaded.name, "embed the bank queries with the index's model",
                              allow_mismatch)
    return np.asarray(bank.matrix, dtype=np.float32)


def load_or_build(index_path: Path, index_name: str, bank_path: Path, bank_name: str, loaded: Any, docs: Callable[[], np.ndarray],
                  method: str, beta: float, vector_source: str | None, allow_mismatch: bool,
                  note: Callable[[str], None]) -> np.ndarray:
    """log Z(d) for every indexed document, from the artifact beside the index when it is up to date."""
    from vecpipe.index.hubness import log_z, unit_rows

    bank = read_bank(bank_path, bank_name, loaded, allow_mismatch)  # checked even when the artifact is up to date
    inputs = {"index": str(index_path), "bank": str(bank_path), "vectors": vector_source}
    manifest = manifests.build_manifest(KIND, inputs, {"method": method, "beta": beta})
    target = artifact_path(index_path, method)
    if manifest is not None and manifests.is_up_to_date(target, manifest):
        logz = _read(target, loaded)
        if logz is not None:
            return logz
    metric = loaded.metric
    logz = log_z(method, unit_rows(docs(), metric), unit_rows(bank, metric), beta)
    if manifest is not None:
        try:
            _write(target, loaded.ids, logz, manifest, method, beta)
            note(f"hubness: log Z(d) of {len(logz)} documents kept in {target}")
        except OSError as exc:
            note(f"hubness: could not keep log Z(d) beside {index_name} ({exc.strerror or exc}); computed for this run only")
    return logz


def _read(path: Path, loaded: Any) -> np.ndarray | None:
    """The artifact's log Z, or ``None`` when it does not match the index row for row (rebuilt)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError):
        return None
    if table.column_names != ["id", "logz"] or table.num_rows != len(loaded.ids) or not table.column("id").combine_chunks().equals(
            loaded.ids.cast(pa.string())):
        return None
    logz = np.asarray(table.column("logz").to_numpy(), dtype=np.float64)
    return logz if np.all(np.isfinite(logz)) else None


def _write(path: Path, ids: pa.Array, logz: np.ndarray, manifest: dict[str, Any], method: str, beta: float) -> None:
    import pyarrow.parquet as pq

    from vecpipe.formats.targets import atomic_open

    meta = metadata.new(KIND, method=method, beta=beta, count=len(logz))
    meta[manifests.MANIFEST_KEY] = manifest
    schema = metadata.attach(pa.schema([("id", pa.string()), ("logz", pa.float64())]), meta)
    table = pa.Table.from_arrays([ids.cast(pa.string()), pa.array(logz, pa.float64())], schema=schema)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh)
