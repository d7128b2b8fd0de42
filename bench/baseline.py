"""jobx bench baseline: run JobX-style handlers in one Python process, without jobx.

Reads a JSON spec on stdin:
  {"runtime": "<path of jobx_runtime.py>",
   "handlers": {"<name>": {"path": "<file>", "type": "mapper|combiner|reducer"}},
   "steps": {"<step>": {"map": "<handler>", "combine": "<handler or empty>", "reduce": "<handler>"}},
   "initial_step": "<step>", "arguments": [[k, v], ...], "warmup": N, "iterations": M}
and writes one JSON object on stdout:
  {"timings_ms": [...], "result": [[k, v], ...], "invocations": <per run>}

The handlers are compiled and given their globals by the same runtime module
that jobx runs them with (jobx_runtime.compile_file and make_globals); each is
loaded once, then every run is mapper -> group by key (or the step's
combiner) -> reducer, climbing branches to the initial step exactly as jobx
does, with no serialisation, processes or storage in between.
"""

import importlib.util
import json
import sys
import time


def load_runtime(path):
    spec = importlib.util.spec_from_file_location('jobx_runtime', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def group_key(k):
    if k is None or isinstance(k, (str, int, float, bool)):
        return k
    return json.dumps(k, sort_keys=True)


def group(pairs):
    """Default combine: [k, v]... -> [k, [v, ...]]..., keys in first-seen order."""
    groups = {}
    for k, v in pairs:
        g = groups.get(group_key(k))
        if g is None:
            groups[group_key(k)] = g = [k, []]
        g[1].append(v)
    return list(groups.values())


class Baseline(object):
    def __init__(self, spec):
        self.rt = load_runtime(spec['runtime'])
        self.fns = {}
        for name, h in spec['handlers'].items():
            code = self.rt.compile_file(h['path'], h['type'])
            g = self.rt.make_globals(name)
            exec(code, g)
            self.fns[name] = g.pop(self.rt.WRAPPER)
        self.steps = spec['steps']
        self.invocations = 0

    def pairs_of(self, result):
        if result is None:
            return []
        return [list(p) for p in result]

    def run_step(self, step_name, arguments):
        step = self.steps[step_name]
        self.invocations += 1  # the map invocation
        it = iter(self.fns[step['map']](arguments))
        first = next(it, None)
        if not isinstance(first, self.rt.MrConfigure):
            raise SystemExit('mapper %s: first item is not an MrConfigure' % step['map'])
        pairs = [list(p) for p in it]
        if isinstance(first, self.rt.MrConfigureToMap):
            children = []
            for p in pairs:
                children.extend(self.run_step(first.next_step_name, [p]))
            reduce_input = group(children)
        else:
            reduce_input = group(pairs)
            if step.get('combine'):
                reduce_input = self.pairs_of(self.fns[step['combine']](reduce_input))
        self.invocations += 1  # its reduce invocation
        return self.pairs_of(self.fns[step['reduce']](reduce_input))


def main():
    spec = json.load(sys.stdin)
    b = Baseline(spec)
    args = spec['arguments']
    for _ in range(spec.get('warmup', 0)):
        b.run_step(spec['initial_step'], args)
    timings, result = [], None
    for _ in range(spec['iterations']):
        b.invocations = 0
        t0 = time.perf_counter()
        result = b.run_step(spec['initial_step'], args)
        timings.append((time.perf_counter() - t0) * 1000.0)
    json.dump({'timings_ms': timings, 'result': result, 'invocations': b.invocations}, sys.stdout)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
