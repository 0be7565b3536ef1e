"""Options shared across subcommands, as ``Annotated`` aliases; help and completion details.

Nothing heavy is imported here (``--help`` stays fast): the formats registry is a table of names.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path, PurePath
from typing import Annotated, Any

import typer

from vecpipe.errors import UsageError
from vecpipe.formats import registry

#: Numeric options reach C code (faiss, onnxruntime) as C ints: larger values are usage errors.
INT_MAX = 2**31 - 1


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"
    max = "max"


class Metric(str, Enum):
    ip = "ip"
    l2 = "l2"
    cos = "cos"
    hamming = "hamming"


class SpecialTokens(str, Enum):
    drop = "drop"
    keep = "keep"


class FdeRole(str, Enum):
    query = "query"
    doc = "doc"


class FloatMetric(str, Enum):
    ip = "ip"
    l2 = "l2"
    cos = "cos"


class TableFormat(str, Enum):
    arrow = "arrow"
    parquet = "parquet"


class RunFormat(str, Enum):
    arrow = "arrow"
    parquet = "parquet"
    trec = "trec"
    msmarco = "msmarco"


#: What each format is called in help texts.
_FORMAT_NAMES = {"arrow": "Arrow IPC file", "parquet": "Parquet", "trec": "TREC text", "msmarco": "MS MARCO TSV",
                 "tsv": "TSV", "json": "JSON", "table": "table", "vpi": "vecpipe index"}


def extensions_help(kind: str) -> str:
    """``.parquet, .pq (Parquet); .arrow, ... (Arrow IPC file)``: the extensions an output of ``kind``
    accepts and the format each selects, from :data:`vecpipe.formats.registry.OUTPUT_FORMATS`."""
    return "; ".join(f"{', '.join(f.extensions)} ({_FORMAT_NAMES.get(f.name, f.name)})"
                     for f in registry.formats_for(kind) if f.extensions)


def _table_output_help(kind: str) -> str:
    return (f"Output file; its extension picks the format: {extensions_help(kind)}. "
            "'-' or omitted: an Arrow IPC stream on stdout (refused on a terminal).")


def _metrics_output_help() -> str:
    names = ", ".join(f.name for f in registry.formats_for(registry.METRICS))
    by_ext = extensions_help(registry.METRICS)
    return (f"Write the metrics to this file instead of stdout (any file name); the format is --format ({names})"
            + (f", else by extension: {by_ext}" if by_ext else "") + ", else tsv.")


#: The ``-o/--output`` help of each subcommand, by the kind of artifact it writes (set on the
#: commands when the command line is built, so that the formats listed are the registry's).
OUTPUT_HELP: dict[str, str] = {
    **{name: _table_output_help(registry.VECTORS) for name in ("embed", "quantize", "binarize", "merge", "fde")},
    **{name: _table_output_help(registry.RUN) + " --format overrides the extension."
       for name in ("search", "rerank", "fuse", "cut")},
    "build-index": "The index file to write ("
                   + ", ".join(e for f in registry.formats_for(registry.INDEX) for e in f.extensions)
                   + "; required: an index is binary and never goes to stdout).",
    "eval": _metrics_output_help(),
}

Output = Annotated[
    str | None,
    typer.Option("--output", "-o", help=_table_output_help(registry.VECTORS), show_default=False),
]
InputArg = Annotated[str, typer.Argument(help="Input file, or '-' for stdin.", show_default=True)]
InputsArg = Annotated[list[str] | None, typer.Argument(
    help="Input files, directories (their files in name order), globs or pyarrow filesystem URIs (s3://, gs://, hdfs://), "
         "read in order as one input; '-' (the default) for stdin.", show_default=False)]
EngineOpt = Annotated[EngineName, typer.Option(
    "--engine", help="Where the work runs: local (this process) or ray (a Ray cluster through Ray Data; pip install 'vecpipe[ray]').")]
Address = Annotated[str | None, typer.Option(
    "--address", help="--engine ray: join a running cluster (auto: the one `ray start --head` started here; HOST:PORT or "
    "ray://HOST:PORT). Default: start a local Ray on this machine's cores.", show_default=False)]
Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, max=100000, help="--engine ray: actors in the pool (default: the cluster's CPUs, or GPUs / --gpus-per-worker).",
    show_default=False)]
GpusPerWorker = Annotated[float, typer.Option(
    "--gpus-per-worker", min=0.0, max=64.0, help="--engine ray: GPUs each actor holds (0: CPU actors; 1: one GPU each, the model on CUDA).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, notes or warnings on stderr; errors still show.")]
Threads = Annotated[int | None, typer.Option("--threads", min=1, max=4096, help="CPU threads (default: all cores).", show_default=False)]
ModelDir = Annotated[
    Path | None,
    typer.Option("--model", help="ONNX model directory (model.onnx + tokenizer.json), or the name of a model exported with "
                 "vecpipe model export; default: all-MiniLM-L6-v2 int8.", show_default=False),
]
PoolingOpt = Annotated[Pooling | None, typer.Option("--pooling", help="Pooling (default: from the model's config, else mean).", show_default=False)]
MaxLength = Annotated[int | None, typer.Option("--max-length", min=1, max=INT_MAX, help="Max tokens per text (default: from the model's "
                                                                                        "config).", show_default=False)]
Prefix = Annotated[str, typer.Option("--prefix", help="Text prepended to every input, e.g. 'query: ' for E5-style models.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where the work runs: cuda (models on onnxruntime-gpu, exact scans and rescoring "
                                          "on CuPy) or cpu; auto takes cuda where it is installed and usable, and says so once.")]
EmbedBatch = Annotated[int | None, typer.Option("--batch-size", min=1, max=INT_MAX, help="Max texts per model batch (default: 32 on "
                                                 "the CPU, 256 on a GPU).", show_default=False)]


class FuseMethod(str, Enum):
    rrf = "rrf"
    zscore = "zscore"
    minmax = "minmax"
    combsum = "combsum"
    combmnz = "combmnz"


class Bm25Method(str, Enum):
    lucene = "lucene"
    robertson = "robertson"
    atire = "atire"
    bm25l = "bm25l"
    bm25plus = "bm25+"


def parse_weights(text: str | None) -> list[float] | None:
    """``--weights 0.3,0.7`` as floats (None when not given); a word that is not a number is a usage error."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(float(part))
        except ValueError:
            raise UsageError(f"--weights {text}: give numbers separated by commas, one per run (not {part.strip()!r})") from None
    return out


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="The form the model runs in, built once per machine and cached: "
                                                 "auto is int8 on the CPU (int8 MatMuls with per-row activation scales, fused "
                                                 "attention: vectors within cosine ~0.995 of the model's, independent of batching) "
                                                 "and fp16 on a GPU; fp32 runs the model as it is on the CPU, its fp32 form on a GPU.")]
IdField = Annotated[str | None, typer.Option("--id-field", help="JSONL/Parquet field holding the id (default: _id or id).", show_default=False)]
TextField = Annotated[str | None, typer.Option("--text-field", help="Field holding the text (default: text).", show_default=False)]
TitleField = Annotated[str | None, typer.Option("--title-field", help="Field joined before the text with a space (default: title, when "
                                                                      "present).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Rebuild even if the output is up to date.")]
AllowMismatch = Annotated[bool, typer.Option(
    "--allow-mismatch", help="Combine vector sets whose metadata says they come from different models, poolings, "
    "normalisations or calibrations (refused by default).")]
TrainSize = Annotated[int | None, typer.Option("--train-size", min=1, max=INT_MAX, help="Vectors sampled for training (default 100000).", show_default=False)]
Seed = Annotated[int | None, typer.Option("--seed", min=0, max=INT_MAX, help="Seed of the training sample and k-means (default 0).", show_default=False)]


# ------------------------------------------------------------------ placeholders and completion

#: Value placeholders in help and man pages, and what shell completion offers, by long option:
#: "file" and "dir" complete paths, "spec" :data:`SPECS`, "measure" :func:`measure_names`.
#: Options not listed get a placeholder from their type, and complete their choices (enums), the
#: integers of a short range (``--bits`` 1..8), or nothing.
VALUE_HINTS: dict[str, tuple[str, str | None]] = {
    "--output": ("FILE", "file"),
    "--model": ("DIR", "dir"),
    "--qrels": ("FILE", "file"),
    "--index": ("FILE", "file"),
    "--vectors": ("FILE", "file"),
    "--queries": ("FILE", "file"),
    "--like": ("FILE", "file"),
    "--rescore": ("FILE", "file"),
    "--calibration": ("FILE", "file"),
    "--spec": ("SPEC", "spec"),
    "--measure": ("MEASURE", "measure"),
    "--shard": ("I/N", None),
    "--prefix": ("TEXT", None),
    "--tag": ("TAG", None),
    "--id-field": ("FIELD", None),
    "--text-field": ("FIELD", None),
    "--title-field": ("FIELD", None),
}

#: Index specs offered by completion of ``build-index --spec`` (any faiss index_factory string works).
SPECS: tuple[str, ...] = (
    "Flat", "HNSW32", "HNSW64", "HNSW32_SQ8", "HNSW32,Flat", "IVF1024,Flat", "IVF4096,Flat", "IVF1024,SQ8",
    "IVF1024,PQ48", "IVF1024,PQ48,RFlat", "IVF1024_HNSW32,Flat", "OPQ48,IVF1024,PQ48", "PQ48", "PQ48x4fs",
    "SQ8", "SQ4", "SQfp16", "PCA128,Flat", "BFlat", "BHNSW32", "BIVF1024", "BIVF1024_HNSW32",
)

#: Cut-offs offered for measures that take one (``nDCG@10``).
CUTOFFS = (1, 3, 5, 10, 20, 100, 1000)


def measure_names() -> list[str]:
    """Measure names offered by completion of ``eval -m``, read from the measure registry
    (``vecpipe/evaluate/registry.py``, its :data:`SPECS` table).

    The table is read as source text (``ast``), not imported: the command line does not depend on
    the evaluation package (nor import numpy) to generate completions. A test checks that the names
    equal those of the imported table and that ``eval`` accepts each of them.
    """
    import ast

    source = Path(__file__).resolve().parents[1] / "evaluate" / "registry.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "MeasureSpec"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue
        fields: dict[str, Any] = {"at": "cutoff", "at_required": False, "aliases": {}}  # MeasureSpec's defaults
        for kw in node.keywords:
            if kw.arg in fields:
                try:
                    fields[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    pass
        names += _measure_forms(node.args[0].value, fields["at"], fields["at_required"], fields["aliases"])
    return list(dict.fromkeys(names))


def _measure_forms(name: str, at: str | None, at_required: bool, aliases: dict[str, Any]) -> list[str]:
    forms = [name] if at is None or not at_required else []
    if at == "cutoff":
        forms += [f"{name}@{k}" for k in CUTOFFS]
    elif at == "recall":
        forms += [f"{name}@{r}" for r in ("0.0", "0.1", "0.2", "0.5", "0.8", "1.0")]
    return forms + [alias for alias, params in aliases.items() if params]


def annotation(param: Any) -> Any:
    """The Python type typer read from a parameter's annotation (``Optional`` removed)."""
    return getattr(getattr(param, "type_descriptor", None), "annotation", None)


def metavar(opts: list[str], ann: Any) -> str | None:
    """The placeholder shown for an option's value (None: typer's own, e.g. the choices of an enum)."""
    for opt in opts:
        if opt in VALUE_HINTS:
            return VALUE_HINTS[opt][0]
    if isinstance(ann, type):
        if issubclass(ann, Enum):
            return None
        if issubclass(ann, bool):
            return None
        if issubclass(ann, int):
            return "N"
        if issubclass(ann, float):
            return "X"
        if issubclass(ann, PurePath):
            return "PATH"
        if issubclass(ann, str):
            return "TEXT"
    return None


def completion(param: Any) -> tuple[str, list[str]]:
    """What completes an option's value: ("words", [...]), ("file", []), ("dir", []) or ("none", [])."""
    for opt in getattr(param, "opts", []):
        hint = VALUE_HINTS.get(opt)
        if hint and hint[1] == "spec":
            return "words", list(SPECS)
        if hint and hint[1] == "measure":
            return "words", measure_names()
        if hint and hint[1] in ("file", "dir"):
            return hint[1], []
        if hint:
            return "none", []
    ann = annotation(param)
    if isinstance(ann, type) and issubclass(ann, Enum):
        return "words", [str(m.value) for m in ann]
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= 16:
        return "words", [str(i) for i in range(low, high + 1)]
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return "file", []
    return "none", []


class CutScores(str, Enum):
    raw = "raw"
    prob = "prob"


class Hubness(str, Enum):
    qbnorm = "qbnorm"
    dbnorm = "dbnorm"


MinProb = Annotated[float | None, typer.Option("--min-prob", min=0.0, max=1.0, help="Drop results whose calibrated probability of "
                                               "relevance is under P.", show_default=False)]
TargetRecall = Annotated[float | None, typer.Option("--target-recall", min=0.0, max=1.0, help="Pick the threshold that keeps this share "
                                                    "of the training positives (recorded in the calibration).", show_default=False)]
ScoresOpt = Annotated[CutScores, typer.Option("--scores", help="raw: keep the run's scores; prob: write the probabilities as the "
                                              "scores (results re-ordered by them).")]


class InsertionOrder(str, Enum):
    input = "input"
    random = "random"
    lid_desc = "lid-desc"
    lid_asc = "lid-asc"
