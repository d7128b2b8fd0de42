"""
Pass each key and its list of values through unchanged.

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
for k, vs in results:
    yield (k, vs)
