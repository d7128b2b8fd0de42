"""
Count the words of one file of the workflow's shared files: one (word, 1)
pair per word, lower-cased, punctuation stripped.

**
handler_type: mapper
"""
import os
import re

name, path = arguments[0]
with open(os.path.join(os.environ['JOBX_FS_ROOT'], path), encoding='utf-8') as f:
    words = re.findall(r"[a-z']+", f.read().lower())
yield MrConfigureToReturn()
for w in words:
    yield (w.strip("'"), 1)
