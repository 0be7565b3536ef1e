"""vecpipe eval: a run and qrels to metrics."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import note


class EvalFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"


@app.command("eval")
def eval_(
    run: Annotated[str, typer.Argument(help="Run: Arrow stream/file, Parquet or TREC text; '-' for stdin.")] = "-",
    qrels: Annotated[str, typer.Option("--qrels", help="Qrels: BEIR TSV (with header), TREC qrels or Parquet.")] = ...,  # type: ignore[assignment]
    measure: Annotated[Optional[list[str]], typer.Option("--measure", "-m", help="Measure in ir_measures notation (repeatable): nDCG@10, R@100, RR@10, AP, P@10, Judged@10. Default: nDCG@10 R@100 RR@10 AP.", show_default=False)] = None,
    format: Annotated[Optional[EvalFormat], typer.Option("--format", help="table (default on a terminal), tsv (default otherwise) or json.", show_default=False)] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="One value per query and measure, then the means (as trec_eval -q).")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the metrics to this file instead of stdout.", show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Evaluate a run against qrels with trec_eval's definitions.

    Means are taken over every query in the qrels; queries the run lacks score 0 (trec_eval -c).
    """
    from vecpipe.evaluate import evaluate, format_json, format_tsv
    from vecpipe.evaluate.measures import parse_measures
    from vecpipe.formats.qrels import read_qrels
    from vecpipe.formats.runs import read_run

    from vecpipe.cli._stage import begin
    from vecpipe.pipeline.uptodate import record_sidecar

    measures = parse_measures(measure or None)
    manifest = begin("eval", output, {"run": run, "qrels": qrels}, {
        "measures": [m.name for m in measures], "format": format.value if format else "tsv", "per_query": per_query,
    }, force, quiet) if output else None
    qrels_table = read_qrels(qrels)
    run_table = read_run(run)
    result = evaluate(run_table, qrels_table, [m.name for m in measures], run_name="run" if run == "-" else run, qrels_name=qrels)
    if result.missing_queries:
        note(f"the run lacks {result.missing_queries} of {result.n_qrels_queries} qrels queries; they score 0", quiet)
    fmt = format or (EvalFormat.table if output is None and sys.stdout.isatty() else EvalFormat.tsv)
    if fmt == EvalFormat.json:
        text = format_json(result, per_query)
    elif fmt == EvalFormat.tsv:
        text = format_tsv(result, per_query)
    else:
        text = _table(result, per_query)
    if output:
        from vecpipe.pipeline.atomic import atomic_open

        with atomic_open(output, "w") as fh:
            fh.write(text)
        record_sidecar(output, manifest)
    else:
        sys.stdout.write(text)


def _table(result, per_query: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    if per_query:
        table.add_column("qid")
    for name in result.aggregate:
        table.add_column(name, justify="right")
    if per_query:
        for qid, row in zip(result.qids, result.values.tolist()):
            table.add_row(str(qid), *(f"{v:.4f}" for v in row))
        table.add_row("all", *(f"{v:.4f}" for v in result.aggregate.values()))
    else:
        table.add_row(*(f"{v:.4f}" for v in result.aggregate.values()))
    console = Console(record=True, width=200, no_color=True, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
    return cap.get() + f"{result.n_qrels_queries} queries ({result.missing_queries} missing from the run)\n"
