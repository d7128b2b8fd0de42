"""jobx bench peer: the benchmark's word count as Dask tasks.

The same handler code as the Celery peer's tasks, loaded the same way
(bench/baseline.py's Baseline over jobx's runtime module), once per worker
process, on first use: count is step count over one document, sum_counts the
root reduction over every document's pairs, echo the trivial request.

Environment: JOBX_BENCH_SPEC (the baseline spec file: runtime, handlers,
steps).
"""

import json
import os

import baseline

_handlers = None


def handlers():
    global _handlers
    if _handlers is None:
        with open(os.environ['JOBX_BENCH_SPEC']) as f:
            _handlers = baseline.Baseline(json.load(f))
    return _handlers


def count(name, text):
    """Step count over one document: its [word, n] pairs."""
    return handlers().run_step('count', [[name, text]])


def sum_counts(results):
    """The root reduction: every document's pairs grouped by word, summed."""
    h = handlers()
    pairs = [p for r in results for p in r]
    return h.pairs_of(h.fns['reduce_sum'](baseline.group(pairs)))


def echo(key, value):
    """The trivial request: [[key, value]], with no handler run."""
    return [[key, value]]
