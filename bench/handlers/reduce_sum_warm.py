"""
Sum each key's values (the trivial job's reducer, kept warm across requests).

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
reuse: handler
"""
for key, values in results:
    yield (key, sum(values))
