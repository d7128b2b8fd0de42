"""
Sum each key's values.

**
handler_type: reducer
reuse: request
"""
for key, values in results:
    yield (key, sum(values))
