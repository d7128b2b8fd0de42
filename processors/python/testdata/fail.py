"""
Fail on purpose.

**
handler_type: reducer
"""
total = 0
for k, vs in results:
    total += sum(vs)


if total > 10:
    raise ValueError("total too large: %d" % total)
return []
