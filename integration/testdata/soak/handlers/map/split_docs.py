"""
Branch one invocation of step count per document argument.

**
handler_type: mapper
"""
yield MrConfigureToMap('count')
for name, text in arguments:
    yield (name, text)
