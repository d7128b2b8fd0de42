"""
Sum each key's values.

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
reuse: request
"""
for key, values in results:
    yield (key, sum(values))
