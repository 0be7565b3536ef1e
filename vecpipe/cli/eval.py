"""vecpipe eval: a run and qrels to metrics (placeholder until the evaluate library lands)."""
