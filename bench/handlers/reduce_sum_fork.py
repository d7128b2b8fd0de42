"""
Sum each key's values (no reuse: a fresh process per invocation).

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
for key, values in results:
    yield (key, sum(values))
