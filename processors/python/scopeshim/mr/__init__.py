# jobx's stand-in for JobX's mr package: only mr.handlers.scope, for
# JobX scope-factory classes (MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS).
