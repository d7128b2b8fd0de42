"""
Keep the largest value per key.

** json
{"handler_type": "combiner",
 "argument_spec": [{"name": "results", "type": "list"}]}
"""
for k, vs in results:
    yield k, [max(vs)]
