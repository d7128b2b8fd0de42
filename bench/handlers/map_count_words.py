"""
Count the words of one document (a leaf mapper).

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
reuse: request
"""
counts = {}
for _, text in arguments:
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
yield MrConfigureToReturn()
for word, n in counts.items():
    yield (word, n)
