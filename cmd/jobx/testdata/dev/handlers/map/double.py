"""
Double every value.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
for k, v in arguments:
    yield (k, v * 2)
