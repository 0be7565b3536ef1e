"""The Python API: one function per stage, each running the stage through the same runner as the
command line (manifests, up-to-date reruns, atomic writes, the same checks), quietly, and returning
what the stage returns::

    from vecpipe import api
    api.embed("corpus.jsonl", "docs.parquet")
    api.build_index("docs.parquet", "docs.vpi", spec="HNSW32")
"""

from __future__ import annotations

from typing import Any

from vecpipe.pipeline.runner import Options, Stage, run


def _run(stage: Stage, force: bool = False, **options: Any) -> Any:
    return run(stage, Options(force=force, **options)).value


def embed(input: str, output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.embed import Embed

    return _run(Embed(input=str(input), output=_s(output), **params), force)


def quantize(vectors: str, output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.compress import Quantize

    return _run(Quantize(vectors=str(vectors), output=_s(output), **params), force)


def binarize(vectors: str, output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.compress import Binarize

    return _run(Binarize(vectors=str(vectors), output=_s(output), **params), force)


def build_index(vectors: str, output: str, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.build_index import BuildIndex

    return _run(BuildIndex(vectors=str(vectors), output=_s(output), **params), force)


def search(queries: str, index: str, output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.search import Search

    return _run(Search(queries=str(queries), index=str(index), output=_s(output), **params), force)


def rerank(run_path: str, vectors: str, queries: str, output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.rerank import Rerank

    return _run(Rerank(run_input=str(run_path), vectors=str(vectors), queries=str(queries), output=_s(output), **params), force)


def evaluate(run_path: str, qrels: str, output: str | None = None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.evaluate import Evaluate

    return _run(Evaluate(run_input=str(run_path), qrels=str(qrels), output=_s(output), **params), force)


def merge(shards: list[str], output: str | None, force: bool = False, **params: Any) -> Any:
    from vecpipe.stages.merge import Merge

    return _run(Merge(shards=[str(s) for s in shards], output=_s(output), **params), force)


def _s(path: Any) -> str | None:
    return None if path is None else str(path)
