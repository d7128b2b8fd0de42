"""
Fail on purpose.

**
handler_type: mapper
"""
import sys
print("something broke", file=sys.stderr)
sys.exit(3)
yield MrConfigureToReturn()
