"""
Split the value of the first argument into random intervals, each under a
random key from 0 to 9. The intervals add up to the value, so the summed
result can be checked. (JobX's version picked a random count below the value
first; this one splits the value itself.)

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
import random

remaining = arguments[0][1]
yield MrConfigureToReturn()
n = 0
while remaining > 0:
    interval = random.randint(1, max(1, remaining // 3))
    yield (random.randint(0, 9), interval)
    remaining -= interval
    n += 1
LOG.info("Yielded (%d) intervals.", n)
