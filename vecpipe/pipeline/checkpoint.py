"""Finished blocks of a long job, kept beside its output until the output is complete.

A rerun of the same job (the same output schema and metadata, hence the same manifest) reuses the
finished blocks; anything else removes them and starts over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from vecpipe.formats import metadata
from vecpipe.formats.targets import atomic_open


class Checkpoint:
    """Blocks ``block-00000000.arrow``, ... in ``.NAME.vecpipe-partial/`` beside the output."""

    def __init__(self, directory: Path, schema: pa.Schema):
        self.dir = directory
        self.schema = schema
        self._stamp = metadata.dumps(metadata.read(schema)).decode()

    def reusable(self) -> int:
        """How many leading blocks a previous run of the same job finished; stale state is removed."""
        stamp = self.dir / "job.json"
        if stamp.is_file():
            try:
                if json.loads(stamp.read_text()).get("meta") == self._stamp:
                    n = 0
                    while (self.dir / self._name(n)).is_file():
                        n += 1
                    return n
            except ValueError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(stamp, "w") as fh:
            json.dump({"meta": self._stamp}, fh)
        return 0

    @staticmethod
    def _name(k: int) -> str:
        return f"block-{k:08d}.arrow"

    def load(self, k: int) -> pa.RecordBatch:
        with ipc.open_file(self.dir / self._name(k)) as reader:
            return reader.get_batch(0)

    def save(self, k: int, batch: pa.RecordBatch) -> None:
        with atomic_open(self.dir / self._name(k)) as fh, ipc.new_file(fh, self.schema) as writer:
            writer.write_batch(batch)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
