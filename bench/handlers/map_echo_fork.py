"""
Return the first argument pair unchanged: a leaf mapper yielding one pair
(no reuse: a fresh process per invocation).

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
key, value = arguments[0]
yield MrConfigureToReturn()
yield (key, value)
