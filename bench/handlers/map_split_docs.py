"""
Branch one invocation of step count per document argument.

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
yield MrConfigureToMap('count')
for name, text in arguments:
    yield (name, text)
