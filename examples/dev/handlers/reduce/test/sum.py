"""
Sum each key's values.

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
tally = {}
for k, vs in results:
    tally[k] = tally.get(k, 0) + sum(vs)
return tally.items()
