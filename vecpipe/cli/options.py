"""Options shared across subcommands, as ``Annotated`` aliases."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

#: Numeric options reach C code (faiss, onnxruntime) as C ints: larger values are usage errors.
INT_MAX = 2**31 - 1


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"
    max = "max"


class Metric(str, Enum):
    ip = "ip"
    l2 = "l2"
    cos = "cos"
    hamming = "hamming"


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


Output = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Output file (format by extension: .parquet, .arrow); '-' or omitted: Arrow stream on stdout.", show_default=False),
]
InputArg = Annotated[str, typer.Argument(help="Input file, or '-' for stdin.", show_default=True)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, max=4096, help="CPU threads (default: all cores).", show_default=False)]
ModelDir = Annotated[
    Optional[Path],
    typer.Option("--model", help="ONNX model directory (model.onnx + tokenizer.json); default: all-MiniLM-L6-v2 int8.", show_default=False),
]
PoolingOpt = Annotated[Optional[Pooling], typer.Option("--pooling", help="Pooling (default: from the model's config, else mean).", show_default=False)]
MaxLength = Annotated[Optional[int], typer.Option("--max-length", min=1, max=INT_MAX, help="Max tokens per text (default: from the model's config).", show_default=False)]
Prefix = Annotated[str, typer.Option("--prefix", help="Text prepended to every input, e.g. 'query: ' for E5-style models.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where the model runs: auto picks cuda when onnxruntime's CUDA provider is installed.")]
EmbedBatch = Annotated[int, typer.Option("--batch-size", min=1, max=INT_MAX, help="Max texts per model batch.")]
IdField = Annotated[Optional[str], typer.Option("--id-field", help="JSONL/Parquet field holding the id (default: _id or id).", show_default=False)]
TextField = Annotated[Optional[str], typer.Option("--text-field", help="Field holding the text (default: text).", show_default=False)]
TitleField = Annotated[Optional[str], typer.Option("--title-field", help="Field joined before the text with a space (default: title, when present).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Rebuild even if the output is up to date.")]
AllowMismatch = Annotated[bool, typer.Option(
    "--allow-mismatch", help="Combine vector sets whose metadata says they come from different models, poolings, "
    "normalisations or calibrations (refused by default).")]
TrainSize = Annotated[Optional[int], typer.Option("--train-size", min=1, max=INT_MAX, help="Vectors sampled for training (default 100000).", show_default=False)]
Seed = Annotated[Optional[int], typer.Option("--seed", min=0, max=INT_MAX, help="Seed of the training sample and k-means (default 0).", show_default=False)]
