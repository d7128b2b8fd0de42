"""
Sum each key's values (JobX's reduce/test/sum.py).

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
tally = {}
for k, vs in results:
    tally[k] = sum(vs)
LOG.info("summed %d keys", len(tally))
return tally.items()
