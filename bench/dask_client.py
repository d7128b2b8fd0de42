"""jobx bench peer driver: times the word count and trivial requests on Dask.

Starts a LocalCluster of `workers` worker processes of one thread each (the
scheduler and the workers' nannies run in this process, no dashboard), with
its scratch space in the working directory, and an asynchronous Client on
this process's event loop; waits for the workers (within ready_timeout_s),
then measures as peer_driver.py says: the word count is client.map(count)
over the documents and one client.submit(sum_counts) over those futures, a
trivial request `await client.submit(echo, 'x', 1)` from asyncio tasks
sharing the Client. Every submission is pure=False, so no result is shared
by key between runs or requests.
"""

import asyncio
import json
import os
import sys

import distributed
from distributed import Client, LocalCluster

import dask_tasks as tasks
import peer_driver


async def measure(spec):
    timeout = spec['timeout_s']
    async with LocalCluster(n_workers=spec['workers'], threads_per_worker=1, processes=True, dashboard_address=None,
                            local_directory=os.getcwd(), asynchronous=True) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(spec['workers'], timeout=spec['ready_timeout_s'])

            def submit(docs):
                futures = client.map(tasks.count, [name for name, _ in docs], [text for _, text in docs], pure=False)
                return client.submit(tasks.sum_counts, futures, pure=False)

            async def wordcount(docs):
                return await peer_driver.timed(lambda: submit(docs), lambda total: asyncio.wait_for(total, timeout))

            async def request():
                out = await asyncio.wait_for(client.submit(tasks.echo, 'x', 1, pure=False), 60)
                if out != [['x', 1]]:
                    raise SystemExit('echo answered %r, want [["x", 1]]' % (out,))

            async def burst(clients, n):
                return await peer_driver.burst_tasks(request, clients, n)

            await peer_driver.run(spec, distributed.__version__, wordcount, burst)


def main():
    asyncio.run(measure(json.load(sys.stdin)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
