"""jobx bench peers: the part of the drivers that Celery's and Dask's share.

A driver reads on stdin {"docs": [[name, text], ...], "sizes": [n, ...],
"warmup_docs": n, "ready_timeout_s": s, "timeout_s": s, "small":
{"clients": [c, ...], "requests": n, "warmup_per_client": n}} and writes
on stdout {"version": v, "ready_unix": t, "wordcount_end_unix": t, "runs":
[{"docs": n, "tasks": n + 1, "wall_s": s, "submit_s": s, "client_cpu_s": s,
"result": [[word, count], ...]}, ...], "small": [{"clients": c, "requests":
n, "wall_s": s, "latencies_ms": [...]}, ...]}.

run() does the timing: one unmeasured word count over the first warmup_docs
documents, then one over the first n documents for each size (wall_s from
submitting to having the result, submit_s until the submitting call
returned, client_cpu_s this process's CPU meanwhile); then, for each number
of clients c, warmup_per_client * c unmeasured and then requests measured
blocking trivial requests, each client sending its next request as soon as
its last one is answered (wall_s from the first request's start to the
last's answer). A driver's clients are threads (burst_threads) or asyncio
tasks (burst_tasks), whichever its peer's client library serves best.
"""

import asyncio
import inspect
import json
import sys
import threading
import time


async def timed(submit, wait):
    """Times submit() and wait(submitted), either of which may be a
    coroutine function: the run's timings and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    handle = submit()
    submitted = time.perf_counter() - t0
    out = wait(handle)
    if inspect.isawaitable(out):
        out = await out
    return {'wall_s': time.perf_counter() - t0, 'submit_s': submitted, 'client_cpu_s': time.process_time() - c0}, out


def burst_threads(request, clients, n):
    """Runs n calls of request() from clients threads: their latencies in ms and the wall time."""
    lock = threading.Lock()
    left = [n]
    latencies, errors = [], []

    def client():
        while True:
            with lock:
                if left[0] == 0 or errors:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            try:
                request()
            except BaseException as e:  # reported by the main thread
                errors.append(e)
                return
            latencies.append((time.perf_counter() - t0) * 1000.0)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return latencies, wall


async def burst_tasks(request, clients, n):
    """Awaits n calls of the coroutine function request() from clients
    asyncio tasks: their latencies in ms and the wall time."""
    left = [n]
    latencies = []

    async def client():
        while left[0]:
            left[0] -= 1
            t0 = time.perf_counter()
            await request()
            latencies.append((time.perf_counter() - t0) * 1000.0)

    t0 = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    return latencies, time.perf_counter() - t0


async def run(spec, version, wordcount, burst):
    """Measures the coroutine functions wordcount(docs) and burst(clients,
    n) as the spec says; prints the JSON."""
    ready = time.time()
    docs = spec['docs']
    await wordcount(docs[:spec['warmup_docs']])
    runs = []
    for n in spec['sizes']:
        r, out = await wordcount(docs[:n])
        r.update({'docs': n, 'tasks': n + 1, 'result': out})
        runs.append(r)
    wordcount_end = time.time()
    small = []
    s = spec.get('small') or {}
    for clients in s.get('clients') or []:
        if s['warmup_per_client']:
            await burst(clients, s['warmup_per_client'] * clients)
        lat, wall = await burst(clients, s['requests'])
        small.append({'clients': clients, 'requests': s['requests'], 'wall_s': wall, 'latencies_ms': lat})
    json.dump({'version': version, 'ready_unix': ready, 'wordcount_end_unix': wordcount_end, 'runs': runs, 'small': small}, sys.stdout)
    sys.stdout.write('\n')
    sys.stdout.flush()
