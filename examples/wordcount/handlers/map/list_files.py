"""
Branch one "count" invocation per .txt file of the directory named by the
argument "dir" (an absolute path the runner can read).

**
handler_type: mapper
"""
import os

d = dict(arguments)['dir']
if not os.path.isabs(d):
    raise ValueError('argument "dir" must be an absolute path, not %r' % d)
yield MrConfigureToMap('count')
for name in sorted(os.listdir(d)):
    if name.endswith('.txt'):
        yield (name, os.path.join(d, name))
