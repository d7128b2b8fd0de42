"""
Branch one "count" invocation per .txt file of the directory named by the
argument "dir": a path in the workflow's shared files (relative to their
root, $JOBX_FS_ROOT, or absolute inside it). jobx up --load copies the
example's files/ folder there.

**
handler_type: mapper
"""
import os

root = os.environ.get('JOBX_FS_ROOT')
if not root:
    raise RuntimeError('this workflow has no shared files (the runner has no --fs-dir or filesystem config)')
d = os.path.join(root, dict(arguments)['dir'])
if not os.path.isdir(d):
    raise ValueError('argument "dir": %r is not a directory of the workflow\'s shared files' % dict(arguments)['dir'])
yield MrConfigureToMap('count')
for name in sorted(os.listdir(d)):
    if name.endswith('.txt'):
        yield (name, os.path.relpath(os.path.join(d, name), root))
