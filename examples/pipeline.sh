#!/usr/bin/env bash
# The main job: embed a BEIR-layout dataset, index it, search it, evaluate the run.
#
#   examples/pipeline.sh [DATASET_DIR] [WORK_DIR]
#
# DATASET_DIR holds corpus.jsonl, queries.jsonl and qrels/test.tsv (default: examples/tiny, which
# ships with the repository; ../shared/datasets/scifact is BEIR SciFact). Outputs go to WORK_DIR
# (default: out/NAME). Set SPEC for another faiss index (default Flat), VECPIPE for another command.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
data=${1:-$here/tiny}
name=$(basename "$data")
work=${2:-out/$name}
spec=${SPEC:-Flat}
vecpipe=${VECPIPE:-vecpipe}

for f in corpus.jsonl queries.jsonl qrels/test.tsv; do
    [ -f "$data/$f" ] || { echo "pipeline.sh: $data/$f not found; give a BEIR-layout dataset directory" >&2; exit 1; }
done
mkdir -p "$work"

$vecpipe embed "$data/corpus.jsonl" -o "$work/docs.vec.parquet"
$vecpipe build-index "$work/docs.vec.parquet" --spec "$spec" -o "$work/docs.vpi"
$vecpipe embed "$data/queries.jsonl" -o "$work/queries.vec.parquet"
$vecpipe search "$work/queries.vec.parquet" --index "$work/docs.vpi" -k 100 -o "$work/run.trec"
$vecpipe eval "$work/run.trec" --qrels "$data/qrels/test.tsv" -m nDCG@10 -m R@100 -m RR@10 -m AP --format tsv | tee "$work/metrics.tsv"
