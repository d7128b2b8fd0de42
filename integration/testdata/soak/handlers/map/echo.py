"""
Return the first argument pair unchanged, and ("gen", GEN): the soak test
rewrites GEN before each handler sync, so a result names the version of
this handler that ran it.

**
handler_type: mapper
reuse: handler
"""
GEN = 0
key, value = arguments[0]
yield MrConfigureToReturn()
yield (key, value)
yield ('gen', GEN)
