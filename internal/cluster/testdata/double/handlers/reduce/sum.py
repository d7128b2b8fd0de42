"""
Sum.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, sum(vs))
