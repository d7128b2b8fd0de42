"""JobX's scope-factory base classes (mr.handlers.scope), as jobx runs them.

A JobX deployment names a subclass of WorkflowScopeFactory in
MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS. For a handler run, the runner asks
factory.get_handler_scope_factory(workflow).get_scope(handler_definition)
for the variables merged into the handler's globals.
"""


class HandlerScopeFactory(object):
    """Gives the variables of one workflow's handlers."""

    def __init__(self, workflow=None, *args, **kwargs):
        self.workflow = workflow

    def get_scope(self, handler_definition):
        """A dict of the variables of the handler handler_definition
        describes (name, version, description, source_code, argument_spec,
        source_type, cast_arguments)."""
        return {}


class WorkflowScopeFactory(object):
    """Gives each workflow's HandlerScopeFactory."""

    def __init__(self, *args, **kwargs):
        pass

    def get_handler_scope_factory(self, workflow):
        return HandlerScopeFactory(workflow)
