"""Generate the man pages (``man/``) and shell completions (``completions/``) from the CLI itself.

Run ``python -m vecpipe.cli._docs [ROOT]`` after changing any command or option; a test fails when
the checked-in files differ from what this writes. ``pip install`` puts them where ``man`` and the
shells look (``share/man/man1``, ``share/bash-completion/completions``, ``share/zsh/site-functions``,
``share/fish/vendor_completions.d``); ``vecpipe completions SHELL`` prints a completion script.

Completion covers values, not only options: measure names from the measure registry for
``eval -m``, index specs for ``build-index --spec``, every option's choices (formats, devices,
metrics, pooling, ``--to``, ``--log-format``), short integer ranges (``--bits`` 1..8) and paths
(:func:`vecpipe.cli.options.completion` decides per option).
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, cast

import typer

from vecpipe import __version__
from vecpipe.cli import app
from vecpipe.cli import options as opts

if TYPE_CHECKING:
    from typer._click import Command, Parameter  # typer's own copy of click
    from typer.core import TyperOption

PROG = "vecpipe"


def _root() -> Command:
    return typer.main.get_command(app)


def _commands(group: Command | None = None) -> list[tuple[str, Command]]:
    """(name, command) of a group's visible subcommands, sorted; the root's by default."""
    group = _root() if group is None else group
    cmds = getattr(group, "commands", None) or {}
    return [(name, cmds[name]) for name in sorted(cmds) if not cmds[name].hidden]


def _is_group(cmd: Command) -> bool:
    return bool(getattr(cmd, "commands", None))


def _leaves() -> list[tuple[str, Command]]:
    """Every command that runs, by its path below vecpipe ("embed", "model export", ...)."""
    out = []
    for name, cmd in _commands():
        if _is_group(cmd):
            out += [(f"{name} {sub}", subcmd) for sub, subcmd in _commands(cmd)]
        else:
            out.append((name, cmd))
    return out


def _options(cmd: Command) -> list:
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option" and not cast("TyperOption", p).hidden]


def _arguments(cmd: Command) -> list:
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "argument"]


def _choices(param: Parameter) -> list[str]:
    ann = opts.annotation(param)
    if isinstance(ann, type) and issubclass(ann, Enum):
        return [str(member.value) for member in ann]
    return []


def _metavar(param: Parameter) -> str:
    ann = opts.annotation(param)
    names = {int: "N", float: "X", str: "TEXT"}
    if ann in names:
        return names[ann]
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return "PATH"
    return "VALUE"


def _short(text: str | None) -> str:
    """The first sentence of a help text, for completion menus."""
    text = " ".join((text or "").split())
    for stop in (". ", "; "):
        if stop in text:
            text = text.split(stop, 1)[0]
    return text.rstrip(".")


def _first_line(cmd: Command) -> str:
    text = (getattr(cmd, "help", None) or "").strip()
    return text.splitlines()[0] if text else ""


# ------------------------------------------------------------------------------------ man pages


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln if ln.startswith((".", "'")) else ln) for ln in text.splitlines())


def _help(cmd: Command) -> str:
    return (cmd.help or "").strip()


#: A few real command lines per subcommand: (what it does, the command line).
EXAMPLES: dict[str | None, list[tuple[str, str]]] = {
    None: [
        ("Embed a corpus, index it and evaluate a search of its queries: the whole pipeline.",
         "vecpipe embed corpus.jsonl -o docs.vec.parquet\n"
         "vecpipe build-index docs.vec.parquet --spec HNSW32 -o docs.vpi\n"
         "vecpipe embed queries.jsonl | vecpipe search --index docs.vpi -k 100 | vecpipe eval --qrels qrels/test.tsv"),
        ("A 1-bit index 32 times smaller than float32, its candidates rescored with the float vectors.",
         "vecpipe binarize docs.vec.parquet --bits 1 -o docs.b1.parquet\n"
         "vecpipe build-index docs.b1.parquet --spec BFlat -o docs.b1.vpi\n"
         "vecpipe search queries.vec.parquet --index docs.b1.vpi --rescore docs.vec.parquet -k 100 -o run.trec"),
        ("JSON log lines for a collector, every stderr line one object.",
         "vecpipe --log-format json embed corpus.jsonl -o docs.vec.parquet 2>> embed.log"),
        ("Shell completion for this shell session.", 'eval "$(vecpipe completions bash)"'),
    ],
    "embed": [
        ("Embed a BEIR corpus with the default model (all-MiniLM-L6-v2, int8).",
         "vecpipe embed corpus.jsonl -o docs.vec.parquet"),
        ("A nightly rerun over a corpus that changed a little: only new and edited records are embedded.",
         "vecpipe embed corpus.jsonl -o docs.vec.parquet        # vectors found again in the embedding cache"),
        ("Queries for an E5-style model, with its query prefix.",
         "vecpipe embed queries.jsonl --model e5-small/ --prefix 'query: ' -o queries.vec.parquet"),
        ("Four shards in parallel, then one table.",
         "seq 0 3 | xargs -P 4 -I{} vecpipe embed corpus.jsonl --shard {}/4 -o shard{}.parquet\n"
         "vecpipe merge shard*.parquet -o docs.vec.parquet"),
        ("Skip malformed records, listing them on stderr.",
         "vecpipe embed corpus.jsonl --skip-bad -o docs.vec.parquet"),
    ],
    "build-index": [
        ("An HNSW graph over float vectors.", "vecpipe build-index docs.vec.parquet --spec HNSW32 -o docs.vpi"),
        ("A BM25 index over the texts themselves (searched with query texts), BM25+ without stemming.",
         "vecpipe build-index corpus.jsonl --spec BM25 --bm25-method bm25+ --stemmer none -o docs.bm25.vpi"),
        ("An IVF index with product-quantized codes, inner product.",
         "vecpipe build-index docs.vec.parquet --spec IVF1024,PQ48 --metric ip -o docs-ivfpq.vpi"),
        ("A binary index over 1-bit codes (Hamming distance).",
         "vecpipe binarize docs.vec.parquet --bits 1 -o docs.b1.parquet\n"
         "vecpipe build-index docs.b1.parquet --spec BFlat -o docs.b1.vpi"),
    ],
    "search": [
        ("QB-Norm hubness reduction with the training queries as the bank; log Z(d) is kept beside the index.",
         "vecpipe search test.vec.parquet --index docs.vpi -k 100 --hubness qbnorm --bank train.vec.parquet --beta 5 -o run.parquet"),
        ("Pseudo-relevance feedback from the top 3, then a calibrated cut at probability 0.05.",
         "vecpipe search test.vec.parquet --index docs.vpi -k 100 --prf 3 -o prf.parquet\n"
         "vecpipe search test.vec.parquet --index docs.vpi -k 100 --calibration calib.json --min-prob 0.05 -o sure.parquet"),
        ("Query vectors from a pipe, the run to a file.",
         "vecpipe embed queries.jsonl | vecpipe search --index docs.vpi -k 100 -o run.arrow"),
        ("Query texts, embedded with the model the index records; TREC text on stdout.",
         "vecpipe search queries.jsonl --index docs.vpi -k 10 --format trec"),
        ("A compressed index, its candidates rescored with the float vectors.",
         "vecpipe search queries.vec.parquet --index docs.b1.vpi --rescore docs.vec.parquet --rescore-multiplier 4 -k 100 -o run.trec"),
    ],
    "eval": [
        ("The default measures (nDCG@10, R@100, RR@10, AP) of a TREC run.", "vecpipe eval run.trec --qrels qrels/test.tsv"),
        ("Chosen measures, as JSON.", "vecpipe eval run.arrow --qrels qrels/test.tsv -m nDCG@10 -m R@100 --format json"),
        ("Per-query values into a file (kept up to date like any output).",
         "vecpipe eval run.arrow --qrels qrels/test.tsv --per-query -o metrics.tsv"),
        ("Straight from a search.",
         "vecpipe search queries.vec.parquet --index docs.vpi -k 100 | vecpipe eval --qrels qrels/test.tsv"),
        ("Measures from ir_measures' providers next to vecpipe's own (RBP needs pip install 'vecpipe[measures]').",
         "vecpipe eval run.trec --qrels qrels/test.tsv -m nDCG@10 -m SetP -m 'RBP(rel=1)' -m \"nDCG(dcg='exp-log2')@10\""),
        ("Each measure's per-query distribution drawn to a PNG (pip install 'vecpipe[plot]').",
         "vecpipe eval run.trec --qrels qrels/test.tsv -m nDCG@10 -m R@100 --plot eval.png"),
    ],
    "inspect": [
        ("What an index holds: kind, spec, count, model, metadata.", "vecpipe inspect docs.vpi"),
        ("A vectors table's schema and metadata as JSON.", "vecpipe inspect docs.vec.parquet --format json"),
        ("A stream on stdin.", "vecpipe embed queries.jsonl | vecpipe inspect -"),
    ],
    "merge": [
        ("Join the shards of one sharded embed (any order).", "vecpipe merge shard*.parquet -o docs.vec.parquet"),
    ],
    "quantize": [
        ("int8 codes with per-dimension ranges calibrated on the corpus (4x smaller).",
         "vecpipe quantize docs.vec.parquet --to int8 -o docs.i8.parquet"),
        ("Queries with the corpus calibration.", "vecpipe quantize queries.vec.parquet --like docs.i8.parquet -o queries.i8.parquet"),
        ("Product quantization, 48 bytes a vector.", "vecpipe quantize docs.vec.parquet --to pq --m 48 -o docs.pq.parquet"),
        ("Matryoshka truncation to 128 dimensions.", "vecpipe quantize docs.vec.parquet --dim 128 -o docs.d128.parquet"),
    ],
    "binarize": [
        ("1-bit sign codes, for Hamming search.", "vecpipe binarize docs.vec.parquet --bits 1 -o docs.b1.parquet"),
        ("2-bit residual codes, scored asymmetrically against float queries.",
         "vecpipe binarize docs.vec.parquet --bits 2 -o docs.b2.parquet"),
        ("Queries with the corpus thresholds.", "vecpipe binarize queries.vec.parquet --like docs.b1.parquet -o queries.b1.parquet"),
    ],
    "rerank": [
        ("Exact rescoring of a run with full-precision vectors read by id.",
         "vecpipe rerank run.arrow --vectors docs.vec.arrow --queries queries.vec.parquet -k 10 -o reranked.trec"),
        ("In a pipe, then evaluated.",
         "vecpipe search queries.vec.parquet --index docs.b1.vpi -k 400 | vecpipe rerank --vectors docs.vec.arrow "
         "--queries queries.vec.parquet -k 100 | vecpipe eval --qrels qrels/test.tsv"),
        ("The top 100 of each query rescored by an ONNX cross-encoder over the texts, 10 kept.",
         "vecpipe rerank run.parquet --cross-encoder ms-marco-MiniLM-L6-v2-onnx --queries queries.jsonl --corpus corpus.jsonl "
         "--depth 100 -k 10 -o reranked.trec"),
    ],
    "cache": [
        ("What the embedding cache holds, then keep it under 2 GiB (least recently used segments go first).",
         "vecpipe cache stats\nvecpipe cache prune --max-size 2GiB"),
    ],
    "compare": [
        ("Float, 1-bit + rescoring and 1-bit Hamming runs against the float one, randomization test, as Markdown.",
         "vecpipe compare flat.parquet b1-rescore.parquet b1.parquet --qrels qrels/test.tsv -m nDCG@10 -m R@100 "
         "--test randomization -o comparison.md"),
        ("The hybrid run against BM25 (the second run is the baseline), JSON with every p-value and confidence interval.",
         "vecpipe compare hybrid.trec bm25.trec --baseline 2 --qrels qrels/test.tsv --format json"),
        ("Per-query differences from the baseline and recall@k curves drawn to a PNG (pip install 'vecpipe[plot]').",
         "vecpipe compare flat.parquet b1-rescore.parquet b1.parquet --qrels qrels/test.tsv -m nDCG@10 -m R@100 --plot compare.png"),
    ],
    "calibrate": [
        ("Fit on the training queries' run and qrels; the file records the model, metric and depth it fits.",
         "vecpipe search train.vec.parquet --index docs.vpi -k 100 -o train.parquet\n"
         "vecpipe calibrate train.parquet --qrels qrels/train.tsv -o calib.json"),
    ],
    "cut": [
        ("Keep the results that hold 95% of the relevant training results, then evaluate.",
         "vecpipe cut run.parquet --calibration calib.json --target-recall 0.95 | vecpipe eval --qrels qrels/test.tsv -m P@10"),
        ("Keep results at least 20% likely to be relevant, their probabilities as the scores, as TREC text.",
         "vecpipe cut run.parquet --calibration calib.json --min-prob 0.2 --scores prob -o sure.trec"),
    ],
    "fde": [
        ("MUVERA: token vectors of documents and queries, encoded alike, searched in a Flat index, the top 500 "
         "reranked by exact Chamfer similarity.",
         "vecpipe embed corpus.jsonl --multi-vector -o docs.mv.parquet\n"
         "vecpipe embed queries.jsonl --multi-vector -o queries.mv.parquet\n"
         "vecpipe fde docs.mv.parquet --role doc --reps 20 --ksim 5 --dproj 16 -o docs.fde.parquet\n"
         "vecpipe fde queries.mv.parquet --role query --like docs.fde.parquet -o queries.fde.parquet\n"
         "vecpipe build-index docs.fde.parquet --spec Flat -o docs.fde.vpi\n"
         "vecpipe search queries.fde.parquet --index docs.fde.vpi -k 500 |\n"
         "  vecpipe rerank --chamfer docs.mv.parquet --queries queries.mv.parquet -k 100 | vecpipe eval --qrels qrels/test.tsv"),
        ("The encodings compressed to 1,280 bytes a document (PQ), queries searched as the index records.",
         "vecpipe quantize docs.fde.parquet --to pq -o docs.fde.pq.parquet\n"
         "vecpipe build-index docs.fde.pq.parquet --spec Flat -o docs.fde.pq.vpi"),
    ],
    "fuse": [
        ("BM25 and dense search fused by per-query z-scores, then evaluated.",
         "vecpipe build-index corpus.jsonl --spec BM25 -o docs.bm25.vpi\n"
         "vecpipe search queries.jsonl --index docs.bm25.vpi -k 100 -o bm25.parquet\n"
         "vecpipe search queries.vec.parquet --index docs.vpi -k 100 -o dense.parquet\n"
         "vecpipe fuse bm25.parquet dense.parquet --method zscore | vecpipe eval --qrels qrels/test.tsv"),
        ("Reciprocal rank fusion of three runs, the second weighted double, ten kept, as TREC text.",
         "vecpipe fuse a.trec b.trec c.parquet --weights 1,2,1 -k 10 -o fused.trec"),
    ],
    "model": [
        ("Export a sentence-transformers model from the hub into the model cache, then embed with it by name.",
         "vecpipe model export BAAI/bge-small-en-v1.5\n"
         "vecpipe embed corpus.jsonl --model BAAI/bge-small-en-v1.5 -o docs.vec.parquet"),
        ("Export a local model directory under a short name.", "vecpipe model export ./my-model --name mine"),
        ("What the cache holds.", "vecpipe model list --format json"),
    ],
    "completions": [
        ("Completion in this bash session.", 'eval "$(vecpipe completions bash)"'),
        ("Installed for zsh (a directory on $fpath).", "vecpipe completions zsh > ~/.zfunc/_vecpipe"),
        ("Installed for fish.", "vecpipe completions fish > ~/.config/fish/completions/vecpipe.fish"),
    ],
}

#: Every environment variable vecpipe reads (or its libraries read on its behalf): (name, meaning).
ENVIRONMENT: list[tuple[str, str]] = [
    ("VECPIPE_LOG_FORMAT",
     "plain (the default) or json, as --log-format (which wins). With json every line vecpipe writes on "
     "stderr is one JSON object: time (local, ISO 8601 with UTC offset), level (info, warning or error), event "
     "(note, warning, up_to_date, wrote, skipped, waiting, progress, done, error, interrupted, terminated), "
     "stage (the subcommand, or null), message (the text of the plain line); progress and done add the count "
     "under the unit's name (docs, queries, rows), unit, total, rate (units/s), elapsed_s, eta_s and tokens; "
     "errors add exit_status. Usage errors follow it too; only a --debug traceback is printed as it is."),
    ("VECPIPE_LOG_INTERVAL",
     "Seconds between progress lines when stderr is not a terminal (default 10; 0: after every batch)."),
    ("VECPIPE_DEBUG", "1: an error shows its Python traceback, as --debug."),
    ("VECPIPE_HAMMING",
     "faiss: binary flat search uses faiss's Hamming scan instead of vecpipe's blocked numba kernel."),
    ("VECPIPE_CACHE_DIR",
     "vecpipe's user cache: file fingerprints, models exported by vecpipe model export (models/NAME), the GPU "
     "forms of models (graphs/); default $XDG_CACHE_HOME/vecpipe."),
    ("VECPIPE_RAY_VERBOSE",
     "1: --engine ray leaves Ray's own console output on (its start-up, workers' logs, Ray Data's banners)."),
    ("VECPIPE_EMBED_CACHE",
     "off: embed neither reads nor adds to the embedding cache, as --no-cache."),
    ("VECPIPE_GPU_ATTENTION",
     "unfused: the GPU form of a model keeps attention as the model has it instead of one fused "
     "MultiHeadAttention per block (to rule the fusion out when a CUDA build misbehaves)."),
    ("VECPIPE_ENCODE_WINDOW",
     "Texts tokenized together and sorted by length before batching (embed; default 2048 on a CPU, 4096 on a GPU)."),
    ("VECPIPE_ENCODE_PREPARE_THREADS",
     "Windows tokenized at once ahead of the model (embed; default 1 on a CPU, 2 on a GPU)."),
    ("VECPIPE_ENCODE_RUNNERS",
     "Batches run at once by separate threads (embed; default 1 on a CPU, 2 on a GPU so the next batch is queued "
     "while the last one's result is stored)."),
    ("VECPIPE_ENCODE_WIDTH_MULTIPLE",
     "Batch widths padded up to a multiple of this many tokens, never past the maximum length (embed; default 1 "
     "on a CPU, 32 on a GPU: fewer input shapes, each new one costs onnxruntime's CUDA provider time)."),
    ("VECPIPE_ENCODE_SPIN",
     "1 or 0: onnxruntime's CPU threads spin (or sleep) between operators; auto, the default, spins unless other "
     "running processes already take the cores the model's threads would use (spinning is about 9% faster on an "
     "idle machine, and slower on a busy one: bench/bench_embed.py --spin 1,0 --busy N)."),
    ("RAYON_NUM_THREADS",
     "Threads of the tokenizer's pool; when unset, embed on a GPU sets it to the cores less two, left to the "
     "threads that read, launch the model and write."),
    ("VECPIPE_NO_STAT_CACHE",
     "1: do not keep input fingerprints in the user cache; every input is hashed again on every run."),
    ("XDG_CACHE_HOME", "Base of the user cache when VECPIPE_CACHE_DIR is unset (default ~/.cache)."),
    ("NO_COLOR", "Set and not empty: no colour in progress bars."),
    ("OMP_NUM_THREADS",
     "Threads faiss uses (OpenMP: build-index, search) when --threads is not given; default: all cores."),
    ("NUMBA_CACHE_DIR", "Where numba keeps the compiled Hamming kernel (default: beside the installed module)."),
]

EXIT_STATUS: list[tuple[str, str]] = [
    ("0", "Success; also when the output is already up to date, and when a reader closes the pipe early (| head)."),
    ("1", "Bad data or a runtime failure: one line on stderr names the file, the place and the fix."),
    ("2", "Usage error: an unknown option, a bad value, options that do not fit together."),
    ("130", "Interrupted (SIGINT, Ctrl-C); partial output is removed."),
    ("143", "Terminated (SIGTERM); partial output is removed."),
]

FILES: list[tuple[str, str]] = [
    (".NAME.vecpipe.json",
     "Hidden sidecar beside a text output NAME (TREC run, metrics): the manifest of the work that wrote it "
     "(input fingerprints, parameters, content digest), read by the up-to-date check. Binary outputs keep "
     "their manifest in their own metadata."),
    (".NAME.vecpipe-partial/",
     "Checkpoints of an embed to NAME: finished blocks, reused when the same command runs again after a "
     "kill; removed when NAME is complete (--no-checkpoint: none)."),
    (".NAME.vecpipe-tmp-*",
     "The output being written; renamed to NAME when complete. Removed on an error, SIGINT or SIGTERM, and by "
     "a later run after a SIGKILL."),
    (".NAME.vecpipe-lock", "Held while NAME is written: one writer per output, a second one waits."),
    ("$VECPIPE_CACHE_DIR/fingerprints.json", "sha256 of input files keyed by their stat, so unchanged files are not read again."),
    ("$VECPIPE_CACHE_DIR/embeddings/",
     "The embedding cache: one directory per model configuration (space.json says which), holding Arrow segments of "
     "(sha256 of the text, vector), each written whole and renamed into place; vecpipe cache stats, prune, clear."),
    ("$VECPIPE_CACHE_DIR/graphs/",
     "The GPU form of each model used on a GPU (dequantized, attention fused, fp16 or fp32, pooling inside), one "
     "file per model sha256, precision and pooling, with its sha256 beside it; rebuilt when damaged."),
]


def _arg_name(arg: Parameter) -> str:
    name = arg.metavar or arg.name.upper()
    return name + ("..." if arg.nargs != 1 and not name.endswith("...") else "")


def _tp(term: str, text: str) -> list[str]:
    return [".TP", f".B {_roff(term)}", _roff(text)]


def _examples(name: str | None) -> list[str]:
    lines = [".SH EXAMPLES"]
    for what, command in EXAMPLES.get(name, []):
        lines += [".PP", _roff(what), ".PP", ".RS 4", ".nf", _roff(command), ".fi", ".RE"]
    return lines if len(lines) > 1 else []


def _common_sections(name: str | None) -> list[str]:
    lines = [".SH ENVIRONMENT"]
    for var, text in ENVIRONMENT:
        lines += _tp(var, text)
    lines.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        lines += _tp(code, text)
    lines.append(".SH FILES")
    lines += [_roff("Beside an output file NAME, in the same directory:")]
    for path, text in FILES:
        lines += _tp(path, text)
    return lines


def _option_lines(cmd: Command) -> list[str]:
    lines = []
    for opt in _options(cmd):
        decl = ", ".join(opt.opts + opt.secondary_opts)
        meta = "" if opt.is_flag else " " + ("|".join(_choices(opt)) or (opt.metavar or _metavar(opt)))
        lines += [".TP", f".B {_roff(decl)}{_roff(meta)}", _roff(opt.help or "")]
        if opt.default not in (None, False, "") and not opt.is_flag and opt.show_default is not False:
            default = getattr(opt.default, "value", opt.default)
            lines.append(f"Default: {_roff(str(default))}.")
    return lines


def man_page(name: str | None, cmd: Command) -> str:
    full = f"{PROG} {name}" if name else PROG
    title = f"{PROG}-{name}" if name else PROG
    lines = [
        f'.TH "{title.upper()}" "1" "" "vecpipe {__version__}" "vecpipe manual"',
        ".SH NAME",
        f"{_roff(title)} \\- {_roff(_first_line(cmd))}",
        ".SH SYNOPSIS",
    ]
    if name and _is_group(cmd):
        lines.append(f".B {_roff(full)}\nCOMMAND [OPTIONS] [ARGS]")
    elif name:
        args: str | list[Any]
        args = " ".join(f"[{_arg_name(a)}]" if not a.required else _arg_name(a) for a in _arguments(cmd))
        lines.append(f".B {_roff(full)}\n[OPTIONS] {_roff(args)}".rstrip())
    else:
        lines.append(f".B {PROG}\n[\\-\\-log\\-format plain|json] [\\-\\-debug] COMMAND [OPTIONS] [ARGS]")
    lines += [".SH DESCRIPTION", _roff(_help(cmd)).replace("\n\n", "\n.PP\n")]
    if not name:
        lines += [".PP", _roff(
            "Each stage reads a table from a file or stdin (-) and writes one to a file or stdout. stdout carries "
            "data only; notes, warnings, errors and progress go to stderr: plain lines (a progress bar on a "
            "terminal, a timestamped line every VECPIPE_LOG_INTERVAL seconds otherwise), or one JSON object a "
            "line with --log-format json (see VECPIPE_LOG_FORMAT below). --quiet (-q) on a subcommand leaves "
            "errors only. Every subcommand also takes --debug.")]
        lines.append(".SH COMMANDS")
        for sub, subcmd in _commands():
            lines += [".TP", f".B {_roff(sub)}", _roff(_first_line(subcmd)) + f" See {PROG}\\-{_roff(sub)}(1)."]
    elif _is_group(cmd):
        lines.append(".SH COMMANDS")
        for sub, subcmd in _commands(cmd):
            sub_args = " ".join(f"[{_arg_name(a)}]" if not a.required else _arg_name(a) for a in _arguments(subcmd))
            lines += [".SS " + _roff(f"{full} {sub} [OPTIONS] {sub_args}".rstrip()),
                      _roff(_help(subcmd)).replace("\n\n", "\n.PP\n")]
            for arg in _arguments(subcmd):
                lines += [".TP", f".B {_roff(_arg_name(arg))}", _roff(getattr(arg, "help", None) or "")]
            lines += _option_lines(subcmd)
    args = _arguments(cmd)
    if args:
        lines.append(".SH ARGUMENTS")
        for arg in args:
            lines += [".TP", f".B {_roff(_arg_name(arg))}", _roff(getattr(arg, "help", None) or "")]
    if _options(cmd):
        lines.append(".SH OPTIONS")
        lines += _option_lines(cmd)
    lines += _examples(name)
    lines += _common_sections(name)
    lines.append(".SH SEE ALSO")
    others = [f"{PROG}\\-{_roff(sub)}(1)" for sub, _ in _commands() if sub != name]
    lines.append(", ".join(([f"{PROG}(1)"] if name else []) + others))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ completions


def _value_options(cmd: Command) -> list[tuple[TyperOption, str, list[str]]]:
    """(option, completion kind, words) for every option that takes a value."""
    return [(p, *opts.completion(p)) for p in _options(cmd) if not p.is_flag]


def _argument_words(cmd: Command) -> list[str]:
    for arg in _arguments(cmd):
        if _choices(arg):
            return _choices(arg)
    return []


def _root_options() -> list:
    return _options(_root())


def _sh_words(words: list[str]) -> str:
    return " ".join(words).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")


def _bash_leaf(out: list[str], path: str, cmd: Command) -> None:
    out.append(f'        "{path}")')
    if _value_options(cmd):
        out.append('            case "$prev" in')
        for p, kind, words in _value_options(cmd):
            pattern = "|".join(p.opts + p.secondary_opts)
            if kind == "words":
                action = f'_vecpipe_words "{_sh_words(words)}" "$cur"'
            elif kind == "file":
                action = '_vecpipe_paths -f "$cur"'
            elif kind == "dir":
                action = '_vecpipe_paths -d "$cur"'
            else:
                action = ":"  # free text: nothing to offer
            out.append(f"                {pattern}) {action}; return;;")
        out.append("            esac")
    names = [o for p in _options(cmd) for o in p.opts + p.secondary_opts] + ["-h", "--help"]
    out.append(f'            opts="{" ".join(dict.fromkeys(names))}"')
    arg_words = _argument_words(cmd)
    if arg_words:
        out.append(f'            if [[ $cur != -* ]]; then _vecpipe_words "{_sh_words(arg_words)}" "$cur"; return; fi')
    elif not _arguments(cmd):
        out.append('            if [[ $cur != -* ]]; then return; fi')
    out.append("            ;;")


def bash_completion() -> str:
    cmds = [n for n, _ in _commands()]
    groups = [n for n, c in _commands() if _is_group(c)]
    root_opts = [o for p in _root_options() for o in p.opts + p.secondary_opts] + ["-h", "--help"]
    found = ('                    case "$cmd" in ' + "|".join(groups) + ") ;; *) break;; esac") if groups else "                    break"
    out = [
        "# bash completion for vecpipe (generated by python -m vecpipe.cli._docs; also: vecpipe completions bash)",
        "",
        "_vecpipe_words() {  # words, current word: COMPREPLY, trimmed for the word breaks bash left in it (@ = :)",
        "    local IFS=$' \\t\\n'",
        '    COMPREPLY=($(compgen -W "$1" -- "$2"))',
        '    local done="${2%"${2##*[@=:]}"}"',
        '    if [[ -n $done ]]; then COMPREPLY=("${COMPREPLY[@]#"$done"}"); fi',
        "}",
        "",
        "_vecpipe_paths() {  # -f files or -d directories",
        "    compopt -o filenames 2>/dev/null",
        "    local IFS=$'\\n'",
        '    COMPREPLY=($(compgen "$1" -- "$2"))',
        "}",
        "",
        "_vecpipe() {",
        '    local cur prev cmd i n opts="" words=()',
        "    if [[ -n ${COMP_LINE+set} && -n ${COMP_POINT+set} ]]; then",
        '        local line="${COMP_LINE:0:COMP_POINT}"',
        '        read -ra words <<< "$line"',
        '        if [[ -z $line || $line == *[[:space:]] ]]; then words+=(""); fi',
        "    else",
        '        words=("${COMP_WORDS[@]:0:COMP_CWORD+1}")',
        "    fi",
        "    n=${#words[@]}",
        '    cur="${words[n-1]}"',
        '    prev=""',
        '    if (( n > 1 )); then prev="${words[n-2]}"; fi',
        '    if [[ $cur == --*=* ]]; then prev="${cur%%=*}"; cur="${cur#*=}"; fi',
        '    cmd=""',
        "    for (( i = 1; i < n - 1; i++ )); do",
        '        case "${words[i]}" in',
        "            --log-format) (( i++ ));;",
        "            -*) ;;",
        "            *)",
        "                if [[ -z $cmd ]]; then",
        '                    cmd="${words[i]}"',
        found,
        "                else",
        '                    cmd="$cmd ${words[i]}"',
        "                    break",
        "                fi;;",
        "        esac",
        "    done",
        "    COMPREPLY=()",
        '    case "$cmd" in',
        '        "")',
        '            case "$prev" in',
    ]
    for p in _root_options():
        if not p.is_flag:
            _kind, words = opts.completion(p)
            out.append(f'                {"|".join(p.opts)}) _vecpipe_words "{_sh_words(words)}" "$cur"; return;;')
    out += [
        "            esac",
        f'            if [[ $cur == -* ]]; then _vecpipe_words "{" ".join(root_opts)}" "$cur"; '
        f'else _vecpipe_words "{" ".join(cmds)}" "$cur"; fi',
        "            return;;",
    ]
    for name, cmd in _commands():
        if not _is_group(cmd):
            _bash_leaf(out, name, cmd)
            continue
        group_opts = [o for p in _options(cmd) for o in p.opts + p.secondary_opts] + ["-h", "--help"]
        subs = [n for n, _ in _commands(cmd)]
        out += [f'        "{name}")',
                f'            if [[ $cur == -* ]]; then _vecpipe_words "{" ".join(group_opts)}" "$cur"; '
                f'else _vecpipe_words "{" ".join(subs)}" "$cur"; fi',
                "            return;;"]
        for sub, subcmd in _commands(cmd):
            _bash_leaf(out, f"{name} {sub}", subcmd)
    out += [
        "        *) return;;",
        "    esac",
        '    if [[ $cur == -* ]]; then _vecpipe_words "$opts" "$cur"; else _vecpipe_paths -f "$cur"; fi',
        "}",
        "",
        "complete -F _vecpipe vecpipe",
        "",
    ]
    return "\n".join(out)


def _zsh_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zsh_action(kind: str, words: list[str], label: str) -> str:
    if kind == "words":
        return f":{label}:(" + " ".join(w.replace("\\", "\\\\").replace("'", "'\\''").replace(" ", "\\ ")
                                         .replace(":", "\\:").replace("(", "\\(").replace(")", "\\)")
                                         for w in words) + ")"
    if kind == "file":
        return f":{label}:_files"
    if kind == "dir":
        return f":{label}:_files -/"
    return f":{label}: "


def _zsh_option_specs(cmd: Command) -> list[str]:
    specs = []
    for p in _options(cmd):
        help_text = _zsh_escape(_short(p.help))
        label = (p.metavar or "value").lower() or "value"
        action = "" if p.is_flag else _zsh_action(*opts.completion(p), label)
        names = p.opts + p.secondary_opts
        repeat = "*" if getattr(p, "multiple", False) else ""
        if len(names) > 1 and not repeat:
            specs.append(f"'({' '.join(names)})'{{{','.join(names)}}}'[{help_text}]{action}'")
        else:
            for o in names:
                specs.append(f"'{repeat}{o}[{help_text}]{action}'")
    specs.append("'(- *)'{-h,--help}'[Show the help and exit]'")
    return specs


def _zsh_group(out: list[str], func: str, group: Command, title: str) -> None:
    """One zsh function for a group (the root or a subcommand group): its options, then its commands."""
    nested: list[tuple[str, Command, str]] = []
    out += [f"{func}() {{", '    local curcontext="$curcontext" state line ret=1', "    local -a commands", "    commands=("]
    for name, cmd in _commands(group):
        out.append(f"        '{name}:{_zsh_escape(_short(_first_line(cmd)))}'")
    out += ["    )", "    _arguments -C \\"]
    for spec in _zsh_option_specs(group):
        out.append(f"        {spec} \\")
    out += ["        '1: :->command' \\", "        '*:: :->args' && ret=0", "    case $state in",
            f"        command) _describe -t commands '{title} command' commands && ret=0;;",
            "        args)", "            case $words[1] in"]
    for name, cmd in _commands(group):
        if _is_group(cmd):
            sub_func = f"{func}_{name.replace('-', '_')}"
            nested.append((sub_func, cmd, f"{title} {name}"))
            out.append(f"                {name}) {sub_func} && ret=0;;")
            continue
        specs = _zsh_option_specs(cmd)
        arg_words = _argument_words(cmd)
        if arg_words:
            specs.append(f"'*:argument:({' '.join(arg_words)})'")
        elif _arguments(cmd):
            specs.append("'*:file:_files'")
        out.append(f"                {name}) _arguments -s \\")
        out += [f"                    {s} \\" for s in specs[:-1]]
        out.append(f"                    {specs[-1]} && ret=0;;")
    out += ["            esac;;", "    esac", "    return ret", "}", ""]
    for sub_func, cmd, sub_title in nested:
        _zsh_group(out, sub_func, cmd, sub_title)


def zsh_completion() -> str:
    out = ["#compdef vecpipe", "# zsh completion for vecpipe (generated by python -m vecpipe.cli._docs; also: vecpipe completions zsh)", ""]
    _zsh_group(out, "_vecpipe", _root(), "vecpipe")
    out += ['if [[ "${funcstack[1]}" == "_vecpipe" ]]; then',
            '    _vecpipe "$@"',
            "else",
            "    compdef _vecpipe vecpipe",
            "fi", ""]
    return "\n".join(out)


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(condition: str, p: TyperOption) -> str:
    longs = [o[2:] for o in p.opts + p.secondary_opts if o.startswith("--")]
    shorts = [o[1:] for o in p.opts + p.secondary_opts if o.startswith("-") and not o.startswith("--") and len(o) == 2]
    olds = [o[1:] for o in p.opts + p.secondary_opts if o.startswith("-") and not o.startswith("--") and len(o) > 2]
    parts = [f"complete -c vecpipe -n {_fish_quote(condition)}"]
    parts += [f"-l {o}" for o in longs] + [f"-s {o}" for o in shorts] + [f"-o {o}" for o in olds]
    if not p.is_flag:
        kind, words = opts.completion(p)
        if kind == "words":
            parts += ["-x", f"-a {_fish_quote(' '.join(words))}"]
        elif kind == "file":
            parts += ["-r", "-F"]
        elif kind == "dir":
            parts += ["-x", "-a '(__fish_complete_directories)'"]
        else:
            parts.append("-x")
    parts.append(f"-d {_fish_quote(_short(p.help))}")
    return " ".join(parts)


def _fish_leaf(out: list[str], cond: str, cmd: Command) -> None:
    arg_words = _argument_words(cmd)
    if arg_words:
        out.append(f"complete -c vecpipe -n {_fish_quote(cond)} -x -a {_fish_quote(' '.join(arg_words))}")
    elif _arguments(cmd):
        out.append(f"complete -c vecpipe -n {_fish_quote(cond)} -F")
    for p in _options(cmd):
        out.append(_fish_option(cond, p))


def fish_completion() -> str:
    out = ["# fish completion for vecpipe (generated by python -m vecpipe.cli._docs; also: vecpipe completions fish)",
           "complete -c vecpipe -f"]
    for p in _root_options():
        out.append(_fish_option("__fish_use_subcommand", p))
    for name, cmd in _commands():
        out.append(f"complete -c vecpipe -n '__fish_use_subcommand' -a {name} -d {_fish_quote(_short(_first_line(cmd)))}")
    for name, cmd in _commands():
        cond = f"__fish_seen_subcommand_from {name}"
        if not _is_group(cmd):
            _fish_leaf(out, cond, cmd)
            continue
        subs = [n for n, _ in _commands(cmd)]
        choose = f"{cond}; and not __fish_seen_subcommand_from {' '.join(subs)}"
        for sub, subcmd in _commands(cmd):
            out.append(f"complete -c vecpipe -n {_fish_quote(choose)} -a {sub} -d {_fish_quote(_short(_first_line(subcmd)))}")
        for p in _options(cmd):
            out.append(_fish_option(choose, p))
        for sub, subcmd in _commands(cmd):
            _fish_leaf(out, f"{cond}; and __fish_seen_subcommand_from {sub}", subcmd)
    return "\n".join(out) + "\n"


COMPLETIONS = {"bash": bash_completion, "zsh": zsh_completion, "fish": fish_completion}

#: Where each completion is checked in (``completions/``) and where ``pip install`` puts it.
COMPLETION_FILES = {
    "bash": ("completions/vecpipe", "share/bash-completion/completions/vecpipe"),
    "zsh": ("completions/_vecpipe", "share/zsh/site-functions/_vecpipe"),
    "fish": ("completions/vecpipe.fish", "share/fish/vendor_completions.d/vecpipe.fish"),
}


def generate() -> dict[str, str]:
    files = {"man/vecpipe.1": man_page(None, _root())}
    for name, cmd in _commands():
        files[f"man/vecpipe-{name}.1"] = man_page(name, cmd)
    for shell, (rel, _installed) in COMPLETION_FILES.items():
        files[rel] = COMPLETIONS[shell]()
    return files


def main(root: str = ".") -> None:
    base = Path(root)
    for rel, text in generate().items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(rel)


if __name__ == "__main__":
    main(*sys.argv[1:])
