"""
Split an argument in half, and send to a downstream step.

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
arg = dict(arguments)['arg1']
yield MrConfigureToMap('step7_chunk_argument')
yield (0, arg // 2)
yield (1, arg // 2 + arg % 2)
