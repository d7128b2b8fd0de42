"""Runs a JobX scope-factory class for one handler (jobx runner --scope-class).

argv: the class's dotted path, the workflow, the handler's name; stdin: the
handler's metadata as JSON. Prints the handler's scope as a JSON object.
The class's module is found on PYTHONPATH, as JobX found it.
"""
import collections
import importlib
import json
import sys

HandlerDefinition = collections.namedtuple(
    'HandlerDefinition',
    'name version description source_code argument_spec source_type cast_arguments')


def main():
    class_path, workflow, handler = sys.argv[1:4]
    meta = json.load(sys.stdin)
    module, _, name = class_path.rpartition('.')
    if not module:
        sys.exit('scope factory class %r: want a dotted path, module.Class' % class_path)
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        sys.exit('scope factory class %s: %s (is its module on PYTHONPATH?)' % (class_path, e))
    import mr.handlers.scope as base
    if not (isinstance(cls, type) and issubclass(cls, base.WorkflowScopeFactory)):
        sys.exit('scope factory class %s is not a subclass of mr.handlers.scope.WorkflowScopeFactory' % class_path)
    hd = HandlerDefinition(handler, meta.get('version'), meta.get('description'), meta.get('source_code', ''),
                           meta.get('argument_spec'), meta.get('source_type'), meta.get('cast_arguments', True))
    scope = cls().get_handler_scope_factory(workflow).get_scope(hd) or {}
    if not isinstance(scope, dict):
        sys.exit('scope factory class %s: get_scope returned %s, not a dict' % (class_path, type(scope).__name__))
    try:
        json.dump(scope, sys.stdout)
    except TypeError as e:
        sys.exit('scope factory class %s: a value is not JSON: %s' % (class_path, e))


if __name__ == '__main__':
    main()
