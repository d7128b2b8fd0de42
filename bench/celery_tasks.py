"""jobx bench peer: the benchmark's word count as Celery tasks.

The tasks run the very handler code jobx runs, loaded the way the baseline
loads it (bench/baseline.py's Baseline, which compiles the handler files with
jobx's own runtime module): count is step count of the benchmark workflow
(map_count_words, the default grouping, reduce_sum) over one document, and
sum_counts is the root reduction (the default grouping of all documents'
pairs, reduce_sum). The word count is chord(count.s(name, text) for each
document)(sum_counts.s()). echo is the trivial request: a task that returns
its argument as one pair, as the jobx bench's trivial job does.

Environment: JOBX_BENCH_BROKER (a redis:// URL, broker and result backend)
and JOBX_BENCH_SPEC (the baseline spec file: runtime, handlers, steps).
"""

import json
import os

from celery import Celery

import baseline

app = Celery('jobx_bench', broker=os.environ['JOBX_BENCH_BROKER'], backend=os.environ['JOBX_BENCH_BROKER'])
app.conf.update(
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    result_expires=3600,
)

with open(os.environ['JOBX_BENCH_SPEC']) as f:
    _handlers = baseline.Baseline(json.load(f))


@app.task(name='jobx_bench.count')
def count(name, text):
    """Step count over one document: its [word, n] pairs."""
    return _handlers.run_step('count', [[name, text]])


@app.task(name='jobx_bench.sum_counts')
def sum_counts(results):
    """The root reduction: every document's pairs grouped by word, summed."""
    pairs = [p for r in results for p in r]
    return _handlers.pairs_of(_handlers.fns['reduce_sum'](baseline.group(pairs)))


@app.task(name='jobx_bench.echo')
def echo(key, value):
    """The trivial request: [[key, value]], with no handler run."""
    return [[key, value]]
