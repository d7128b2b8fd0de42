"""
Return the first argument pair unchanged: a leaf mapper yielding one pair.

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
reuse: handler
"""
key, value = arguments[0]
yield MrConfigureToReturn()
yield (key, value)
