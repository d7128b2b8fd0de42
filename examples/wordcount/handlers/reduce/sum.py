"""
Sum each word's counts.

**
handler_type: reducer
"""
return [(word, sum(counts)) for word, counts in results]
