"""
Count the words of one document (a leaf mapper).

**
handler_type: mapper
reuse: request
"""
counts = {}
for _, text in arguments:
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
yield MrConfigureToReturn()
for word, n in counts.items():
    yield (word, n)
