"""The output formats each kind of artifact can be written in, and the extensions that choose them.

One table, :data:`OUTPUT_FORMATS`: a format names the artifact kinds it can hold, the file
extensions that select it, and whether it is binary (refused on a terminal). Adding an output
format is one entry here plus its writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vecpipe.errors import UsageError

VECTORS = "vectors"
RUN = "run"
METRICS = "metrics"
INDEX = "index"
REPORT = "report"
COMPARISON = "comparison"
CALIBRATION = "calibration"


@dataclass(frozen=True)
class OutputFormat:
    name: str
    kinds: tuple[str, ...]
    extensions: tuple[str, ...]
    binary: bool


OUTPUT_FORMATS: list[OutputFormat] = [
    OutputFormat("arrow", (VECTORS, RUN), (".arrow", ".arrows", ".ipc", ".feather"), binary=True),
    OutputFormat("parquet", (VECTORS, RUN), (".parquet", ".pq"), binary=True),
    OutputFormat("trec", (RUN,), (".trec", ".run", ".txt"), binary=False),  # qid Q0 docid rank score tag
    OutputFormat("msmarco", (RUN,), (".tsv",), binary=False),  # qid<TAB>docid<TAB>rank
    OutputFormat("tsv", (METRICS, COMPARISON), (".tsv", ".txt"), binary=False),
    OutputFormat("json", (METRICS, REPORT, COMPARISON, CALIBRATION), (".json",), binary=False),
    OutputFormat("text", (REPORT,), (), binary=False),
    OutputFormat("table", (METRICS, COMPARISON), (), binary=False),
    OutputFormat("markdown", (COMPARISON,), (".md", ".markdown"), binary=False),
    OutputFormat("latex", (COMPARISON,), (".tex",), binary=False),
    OutputFormat("vpi", (INDEX,), (".vpi",), binary=True),
]

#: Per kind: the format written to stdout, and the one a file without an extension gets (None:
#: refused). A file whose extension selects no format of its kind is always refused.
_DEFAULTS = {VECTORS: ("arrow", None), RUN: ("arrow", None), METRICS: ("tsv", "tsv"), INDEX: ("vpi", "vpi"),
             REPORT: ("text", "text"), COMPARISON: ("tsv", "tsv"),
             CALIBRATION: ("json", "json")}


def formats_for(kind: str) -> list[OutputFormat]:
    return [f for f in OUTPUT_FORMATS if kind in f.kinds]


def get(name: str) -> OutputFormat:
    for f in OUTPUT_FORMATS:
        if f.name == name:
            return f
    raise KeyError(name)


def output_format(kind: str, out: str | Path | None, fmt: str | None = None) -> OutputFormat:
    """The format of an output of ``kind``: ``fmt`` if given, else by extension, else the default.

    An extension that selects nothing for this kind is a usage error listing the ones that do.
    """
    allowed = formats_for(kind)
    if fmt:
        fmt = fmt.lower()
        for f in allowed:
            if f.name == fmt:
                return f
        raise UsageError(f"unknown {kind} format {fmt!r}; use one of {', '.join(f.name for f in allowed)}")
    stdout_default, file_default = _DEFAULTS[kind]
    if out is None or str(out) == "-":
        return get(stdout_default)
    suffix = Path(str(out)).suffix.lower()
    for f in allowed:
        if suffix in f.extensions:
            return f
    if file_default is not None and not suffix:
        return get(file_default)
    names = ", ".join(sorted({ext for f in allowed for ext in f.extensions}))
    hint = " or --format" if kind in (VECTORS, RUN, METRICS) else ""
    raise UsageError(f"{out}: unknown output extension {suffix or '(none)'!r} for {kind}; use one of {names}{hint}")


def extensions_help(kind: str) -> str:
    """The extensions an output of ``kind`` accepts and the format each selects, for ``--help``."""
    return "; ".join(f"{', '.join(f.extensions)} {f.name}" for f in formats_for(kind) if f.extensions)
