"""
Sum each key's values (the trivial job's reducer, kept warm across requests).

**
handler_type: reducer
reuse: handler
"""
for key, values in results:
    yield (key, sum(values))
