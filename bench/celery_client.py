"""jobx bench peer driver: times the word count on Celery.

Reads {"docs": [[name, text], ...], "sizes": [n, ...], "warmup_docs": n,
"ready_timeout_s": s, "timeout_s": s} on stdin, waits for a worker to answer
a ping, runs one unmeasured chord over the first warmup_docs documents, then
one chord over the first n documents for each size, and writes
{"celery_version": v, "ready_unix": t, "runs": [{"docs": n, "tasks": n + 1,
"wall_s": s, "submit_s": s, "client_cpu_s": s, "result": [[word, count],
...]}, ...]} on stdout. wall_s is from submitting the chord to having its
result, submit_s until the chord call returned, client_cpu_s the CPU this
process used meanwhile.
"""

import json
import sys
import time

import celery
from celery import chord

import celery_tasks as tasks


def wordcount(docs, timeout):
    t0, c0 = time.perf_counter(), time.process_time()
    res = chord([tasks.count.s(name, text) for name, text in docs])(tasks.sum_counts.s())
    submitted = time.perf_counter() - t0
    # follow_parents=False: the chord's result is the callback's, and the
    # default (True) makes Celery 5.2's client walk every header task's
    # result first, which is the client's overhead, not the work's.
    out = res.get(timeout=timeout, follow_parents=False)
    return {'wall_s': time.perf_counter() - t0, 'submit_s': submitted, 'client_cpu_s': time.process_time() - c0}, out


def main():
    spec = json.load(sys.stdin)
    deadline = time.time() + spec['ready_timeout_s']
    while not tasks.app.control.ping(timeout=0.5):
        if time.time() > deadline:
            raise SystemExit('no Celery worker answered a ping within %ss' % spec['ready_timeout_s'])
    ready = time.time()
    docs = spec['docs']
    wordcount(docs[:spec['warmup_docs']], spec['timeout_s'])
    runs = []
    for n in spec['sizes']:
        run, out = wordcount(docs[:n], spec['timeout_s'])
        run.update({'docs': n, 'tasks': n + 1, 'result': out})
        runs.append(run)
    json.dump({'celery_version': celery.__version__, 'ready_unix': ready, 'runs': runs}, sys.stdout)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
