# A leaf mapper that uses the injected names.
"""
Emit every argument doubled.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
PRINT("print goes to the log")
print("so does print")
NOTIFY.info("seen %d arguments", len(arguments))
for k, v in arguments:
    yield k, v * 2
yield JOIN("a", "b"), SEP
yield "scope", test_scope_val
yield "fs", FS
