"""jobx bench peer driver: times the word count and trivial requests on Celery.

Waits for a worker to answer a ping (within ready_timeout_s), then measures
as peer_driver.py says: the word count is chord(count.s(name, text) for each
document)(sum_counts.s()), a trivial request echo.delay('x', 1).get() from
threads sharing this process's app.
"""

import asyncio
import json
import sys
import time

import celery
from celery import chord

import celery_tasks as tasks
import peer_driver


def main():
    spec = json.load(sys.stdin)
    deadline = time.time() + spec['ready_timeout_s']
    while not tasks.app.control.ping(timeout=0.5):
        if time.time() > deadline:
            raise SystemExit('no Celery worker answered a ping within %ss' % spec['ready_timeout_s'])
    timeout = spec['timeout_s']

    async def wordcount(docs):
        # follow_parents=False: the chord's result is its callback's. The
        # default (True) makes Celery 5.2's client re-check every header
        # task at each wait interval, which is the client's overhead, not
        # the work's; a failed header task still fails the callback.
        return await peer_driver.timed(lambda: chord([tasks.count.s(name, text) for name, text in docs])(tasks.sum_counts.s()),
                                 lambda res: res.get(timeout=timeout, follow_parents=False))

    def request():
        out = tasks.echo.delay('x', 1).get(timeout=60)
        if out != [['x', 1]]:
            raise SystemExit('echo answered %r, want [["x", 1]]' % (out,))

    async def burst(clients, n):
        return peer_driver.burst_threads(request, clients, n)

    asyncio.run(peer_driver.run(spec, celery.__version__, wordcount, burst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
