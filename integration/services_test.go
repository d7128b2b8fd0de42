package integration

import (
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/runner"
)

func TestSessionsAreWrittenByTheMapperReadByItsReducerAndPrivate(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_split", "map/split.py", strings.Replace(splitPy, "'chunk'", "'remember'", 1))
	// Each child writes its own value; a sibling's key must not show up.
	c.handler("wf", "map_remember", "map/remember.py", `"""
Remember the argument in the session, under a key of its own and a shared one.

**
handler_type: mapper
"""
k, v = arguments[0]
try:
    S_GET('mine')
    raise RuntimeError('a fresh session already had a value')
except KeyError:
    pass
S_SET('mine', v)
S_SET('child_%d' % k, {'value': v})
yield MrConfigureToReturn()
yield ('v', v)
`)
	c.handler("wf", "combine_note", "combine/note.py", `"""
Note in the session that the combiner ran.

**
handler_type: combiner
"""
S_SET('combined', True)
for k, vs in results:
    yield (k, vs)
`)
	c.handler("wf", "reduce_session", "reduce/session.py", `"""
Report the session it reads, and prove it cannot write it.

**
handler_type: reducer
"""
try:
    S_SET('nope', 1)
    writable = True
except RuntimeError:
    writable = False
yield ('session', dict(S_LIST()))
yield ('mine', S_GET('mine'))
yield ('writable', writable)
`)
	c.step("wf", "remember", "map_remember", "combine_note", "reduce_session")
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "split", "map_split", "", "reduce_noop")
	c.job("wf", "split", "split")
	// split 7: children (0, 3) and (1, 4); each child's reducer sees only
	// its own child's session.
	got := c.post("wf", "split", `{"arguments":{"arg1":7}}`, "").pairs(t)
	assertPairs(t, got, map[string]string{
		`"session"`:  `[{"child_0":{"value":3},"combined":true,"mine":3},{"child_1":{"value":4},"combined":true,"mine":4}]`,
		`"mine"`:     `[3,4]`,
		`"writable"`: `[false,false]`,
	})
}

func TestScopeFactoriesGiveSecretsOnlyToTheHandlersNamed(t *testing.T) {
	for _, kind := range []string{"file", "executable", "jobx-class"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var scopeCommand, scopeEnv []string
			switch kind {
			case "jobx-class":
				// A JobX scope-factory class, as JobX's test/scope fixture
				// wrote one, found on PYTHONPATH.
				os.WriteFile(filepath.Join(dir, "jobx_test_scope.py"), []byte(`import mr.handlers.scope


class _HandlerScopeFactory(mr.handlers.scope.HandlerScopeFactory):
    def get_scope(self, handler_definition):
        scope = {'REGION': 'eu', 'RETRIES': 3, 'LIMITS': {'max': 2.5, 'on': True}}
        if handler_definition.name == 'map_secret':
            scope['API_TOKEN'] = 's3cr3t'
        return scope


class WorkflowScopeFactory(mr.handlers.scope.WorkflowScopeFactory):
    def get_handler_scope_factory(self, workflow):
        return _HandlerScopeFactory(workflow)
`), 0o644)
				var err error
				if scopeCommand, scopeEnv, err = python.ScopeClassCommand(t.TempDir(), "jobx_test_scope.WorkflowScopeFactory"); err != nil {
					t.Fatal(err)
				}
				scopeEnv[0] += string(os.PathListSeparator) + dir
				dir = "" // no --scope-dir: the class serves every workflow
			case "file":
				os.WriteFile(filepath.Join(dir, "wf.yaml"), []byte("all:\n  REGION: eu\n  RETRIES: 3\n  LIMITS: {max: 2.5, on: true}\nhandlers:\n  map_secret:\n    API_TOKEN: s3cr3t\n"), 0o600)
			case "executable":
				os.WriteFile(filepath.Join(dir, "wf"), []byte(`#!/bin/sh
# Variables by handler name ($1); the handler's metadata is on stdin.
meta=$(cat)
case "$meta" in *'"handler":"'$1'"'*) ;; *) echo "bad metadata: $meta" >&2; exit 1;; esac
if [ "$1" = map_secret ]; then echo '{"REGION":"eu","RETRIES":3,"LIMITS":{"max":2.5,"on":true},"API_TOKEN":"s3cr3t"}'; else echo '{"REGION":"eu","RETRIES":3,"LIMITS":{"max":2.5,"on":true}}'; fi
`), 0o755)
			}
			c := startCluster(t)
			c.addRunner(func(o *runner.Options) { o.ScopeDir, o.ScopeCommand, o.ScopeEnv = dir, scopeCommand, scopeEnv })
			c.workflow("wf")
			src := `"""
Report which scope variables it sees, as globals and in the environment.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
token = globals().get('API_TOKEN')
if token is not None and os.environ.get('API_TOKEN') != token:
    raise RuntimeError('the global and the environment disagree')
yield ('token', 'absent' if token is None else 'sha:' + __import__('hashlib').sha1(token.encode()).hexdigest()[:8])
yield ('region', REGION)
# Values keep their JSON types (JobX's test_scope_val + 1); the
# environment has their text.
yield ('typed', [RETRIES + 1, LIMITS['max'] * 2, LIMITS['on'], os.environ['RETRIES'], os.environ['LIMITS']])
`
			c.handler("wf", "map_secret", "map/secret.py", src)
			c.handler("wf", "map_plain", "map/plain.py", src)
			c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
			c.step("wf", "secret", "map_secret", "", "reduce_noop")
			c.step("wf", "plain", "map_plain", "", "reduce_noop")
			c.job("wf", "secret", "secret")
			c.job("wf", "plain", "plain")
			typed := `[[4,5.0,true,"3","{\"max\":2.5,\"on\":true}"]]`
			assertPairs(t, c.post("wf", "secret", `{"arguments":{}}`, "").pairs(t), map[string]string{`"token"`: `["sha:` + sha8("s3cr3t") + `"]`, `"region"`: `["eu"]`, `"typed"`: typed})
			assertPairs(t, c.post("wf", "plain", `{"arguments":{}}`, "").pairs(t), map[string]string{`"token"`: `["absent"]`, `"region"`: `["eu"]`, `"typed"`: typed})
			// The secret is not in etcd.
			for _, kv := range mustList(t, c, "/") {
				if strings.Contains(kv[1], "s3cr3t") {
					t.Fatalf("the secret is stored in etcd at %s", kv[0])
				}
			}
		})
	}
}

func sha8(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])[:8]
}

func TestSessionHelpersForNodeAndSh(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_node", "map/node.js", `/*
Write the session from Node.js.

**
handler_type: mapper
*/
const jobx = require('jobx');
jobx.run(async function* (input) {
  await jobx.session.set('lang', {name: 'node', args: input.length});
  yield jobx.toReturn();
  yield ['ok', (await jobx.session.get('lang')).name];
});
`)
	c.handler("wf", "reduce_sh", "reduce/sh.sh", `#!/bin/sh
# Read the session from sh; writing it must fail.
#
# **
# handler_type: reducer
. "$JOBX_SH_HELPERS"
lang=$(jobx_session_get lang) || exit 1
if jobx_session_set other 1 2>/dev/null; then echo "a reducer wrote its session" >&2; exit 1; fi
while IFS= read -r line; do :; done
jobx_emit '"session"' "$lang"
`)
	c.step("wf", "s", "map_node", "", "reduce_sh")
	c.job("wf", "j", "s")
	assertPairs(t, c.post("wf", "j", `{"arguments":{"a":1,"b":2}}`, "").pairs(t), map[string]string{`"session"`: `{"name":"node","args":2}`})
}
