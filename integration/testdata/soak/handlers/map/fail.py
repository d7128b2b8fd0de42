"""
Fail on purpose: the request ends with kind handler_failed.

**
handler_type: mapper
"""
raise ValueError('soak: this handler fails on purpose')
yield MrConfigureToReturn()
