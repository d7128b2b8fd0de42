"""
Double every value.

**
handler_type: mapper
"""
LOG.info("doubling %d values", len(arguments))
yield MrConfigureToReturn()
for k, v in arguments:
    yield (k, v * 2)
