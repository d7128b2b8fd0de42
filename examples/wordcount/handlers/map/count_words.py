"""
Count the words of one file: one (word, 1) pair per word, lower-cased,
punctuation stripped.

**
handler_type: mapper
"""
import re

name, path = arguments[0]
with open(path, encoding='utf-8') as f:
    words = re.findall(r"[a-z']+", f.read().lower())
yield MrConfigureToReturn()
for w in words:
    yield (w.strip("'"), 1)
