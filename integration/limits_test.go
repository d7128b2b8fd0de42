package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors/node"
	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/processors/shell"
)

// failure returns a failed request's error, after checking its status and
// kind.
func (r response) failure(t *testing.T, status int, kind string) map[string]any {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	if r.status != status || e == nil || e["kind"] != kind {
		t.Fatalf("want %d with kind %q, got %d: %.1000s", status, kind, r.status, r.raw)
	}
	return e
}

// The helpers check a session value before sending it against a copy of
// the endpoint's limit.
func TestSessionHelpersKnowTheSessionValueLimit(t *testing.T) {
	for name, src := range map[string][]byte{"python": python.Runtime, "node": node.Helper, "sh": shell.Helpers} {
		if !bytes.Contains(src, []byte(strconv.Itoa(kvmodel.MaxSessionValueBytes))) {
			t.Errorf("the %s helper does not hold the session value limit, %d", name, kvmodel.MaxSessionValueBytes)
		}
	}
}

func TestSessionValueOverItsLimitFailsNamingTheLimitAndKeepsTheSession(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_sess", "map/sess.py", `"""
Set a session value over the limit, caught or not as the argument says.

**
handler_type: mapper
"""
S_SET('a', {'kept': True})
try:
    S_SET('k', 'x' * 10_000_000)
    raise RuntimeError('an oversized value was accepted')
except ValueError as e:
    caught = '%s: %s' % (type(e).__name__, e)
if S_GET('a') != {'kept': True}:
    raise RuntimeError('the session lost its earlier value')
if arguments[0][1] == 'raise':
    S_SET('k', 'x' * 10_000_000)
yield MrConfigureToReturn()
yield ('caught', caught)
`)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "sess", "map_sess", "", "reduce_noop")
	c.job("wf", "sess", "sess")
	const msg = `session value of key "k" is 10000002 bytes, over the 1048576-byte session value limit`

	assertPairs(t, c.post("wf", "sess", `{"arguments":{"mode":"catch"}}`, "").pairs(t), map[string]string{
		`"caught"`: fmt.Sprintf("[%q]", "TooLargeError: "+msg),
	})

	e := c.post("wf", "sess", `{"arguments":{"mode":"raise"}}`, "").failure(t, 500, "handler_failed")
	tail, _ := e["stderr_tail"].(string)
	if !strings.Contains(tail, "TooLargeError: "+msg) || strings.Contains(tail, "BrokenPipe") {
		t.Fatalf("stderr tail does not end in the limit's error: %q", tail)
	}
	// The failed invocation's session still holds what was set before.
	inv, _ := e["invocation_id"].(string)
	resp, err := c.cli.Get(context.Background(), kvmodel.SessionPrefix("wf", inv)+"a")
	if err != nil || len(resp.Kvs) != 1 || compact(resp.Kvs[0].Value) != `{"kept":true}` {
		t.Fatalf("the earlier session value is gone: %v %v", resp, err)
	}
}

func TestSessionValueLimitInNodeAndShAndAtTheEndpoint(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_node", "map/node.js", `/*
Set a session value over the limit from Node.js.

**
handler_type: mapper
*/
const jobx = require('jobx');
jobx.run(async function* () {
  await jobx.session.set('a', {kept: true});
  let caught = null;
  try {
    await jobx.session.set('k', 'x'.repeat(2000000));
  } catch (e) {
    caught = e.name + (e instanceof RangeError ? ' (a RangeError)' : '') + ': ' + e.message;
  }
  yield jobx.toReturn();
  yield ['caught', caught];
  yield ['kept', await jobx.session.get('a')];
});
`)
	c.handler("wf", "map_sh", "map/sh.sh", `#!/bin/sh
# Set a session value over the limit from sh: through the helper, and
# straight to the services endpoint with curl.
#
# **
# handler_type: mapper
. "$JOBX_SH_HELPERS"
jobx_session_set a '{"kept":true}' || exit 1
big="\"$(head -c 2000000 /dev/zero | tr '\0' x)\""
if jobx_session_set k "$big" 2>"$JOBX_SCRATCH/helper.err"; then echo "the helper set an oversized value" >&2; exit 1; fi
{ printf '"'; head -c 3000000 /dev/zero | tr '\0' x; printf '"'; } >"$JOBX_SCRATCH/big.json"
if _jobx_call -X PUT --data-binary @"$JOBX_SCRATCH/big.json" http://jobx/v1/session/k >"$JOBX_SCRATCH/server.out" 2>"$JOBX_SCRATCH/curl.err"; then
	echo "the endpoint set an oversized value" >&2; exit 1
fi
while IFS= read -r line; do :; done
jobx_return
jobx_emit '"helper"' "$(jobx_string "$(cat "$JOBX_SCRATCH/helper.err")")"
jobx_emit '"server"' "$(jobx_string "$(cat "$JOBX_SCRATCH/server.out")")"
jobx_emit '"curl"' "$(jobx_string "$(cat "$JOBX_SCRATCH/curl.err")")"
jobx_emit '"kept"' "$(jobx_session_get a)"
`)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "node", "map_node", "", "reduce_noop")
	c.step("wf", "sh", "map_sh", "", "reduce_noop")
	c.job("wf", "node", "node")
	c.job("wf", "sh", "sh")
	over := func(size int) string {
		return fmt.Sprintf(`session value of key "k" is %d bytes, over the 1048576-byte session value limit`, size)
	}

	assertPairs(t, c.post("wf", "node", `{"arguments":{}}`, "").pairs(t), map[string]string{
		`"caught"`: fmt.Sprintf("[%q]", "TooLargeError (a RangeError): "+over(2000002)),
		`"kept"`:   `[{"kept":true}]`,
	})
	assertPairs(t, c.post("wf", "sh", `{"arguments":{}}`, "").pairs(t), map[string]string{
		`"helper"`: fmt.Sprintf("[%q]", "jobx: "+over(2000002)),
		`"server"`: fmt.Sprintf("[%q]", over(3000002)),
		`"curl"`:   fmt.Sprintf("[%q]", "curl: (22) The requested URL returned error: 413"),
		`"kept"`:   `[{"kept":true}]`,
	})
}

func TestDatasetItemOverItsLimitFailsTheRequestNamingTheLimit(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_big", "map/big.py", `"""
Yield a value of n bytes.

**
handler_type: mapper
"""
n = dict(arguments)['n']
yield MrConfigureToReturn()
yield ('k', 'x' * n)
`)
	c.handler("wf", "reduce_big", "reduce/big.py", `"""
Reduce each key to a value of 9,000,000 bytes.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, 'x' * 9_000_000)
`)
	c.handler("wf", "reduce_len", "reduce/len.py", `"""
Reduce each key to the lengths of its values.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, [len(v) for v in vs])
`)
	c.step("wf", "map", "map_big", "", "reduce_len")
	c.step("wf", "reduce", "map_big", "", "reduce_big")
	c.job("wf", "map", "map")
	c.job("wf", "reduce", "reduce")

	// An item of up to the limit goes through.
	n := kvmodel.MaxItemBytes - len(`["k",""]`)
	assertPairs(t, c.post("wf", "map", fmt.Sprintf(`{"arguments":{"n":%d}}`, n), "").pairs(t), map[string]string{`"k"`: fmt.Sprintf("[%d]", n)})
	for _, tc := range []struct {
		job, n, handler, want string
	}{
		{"map", "9000000", "map_big", "handler map_big wrote a dataset item over its limit: stdout line 2 is 9000008 bytes, over the 8388608-byte dataset item limit"},
		{"reduce", "1", "reduce_big", "handler reduce_big wrote a dataset item over its limit: stdout line 1 is 9000008 bytes, over the 8388608-byte dataset item limit"},
	} {
		t.Run("yielded by the "+tc.job+" handler", func(t *testing.T) {
			e := c.post("wf", tc.job, `{"arguments":{"n":`+tc.n+`}}`, "").failure(t, 500, "item_limit")
			if e["message"] != tc.want || e["handler"] != tc.handler {
				t.Fatalf("want %q by %s, got %v", tc.want, tc.handler, e)
			}
		})
	}
}

func TestArgumentsAndBodiesOverTheirLimitsAreRefusedNamingThem(t *testing.T) {
	c := startCluster(t, func(o *gateway.Options) { o.MaxBodyBytes = 16 << 20 })
	c.addRunner()
	c.leafWorkflow("wf")
	big := strings.Repeat("x", 9<<20)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"an argument over the item limit", `{"arguments":{"n":1,"big":"` + big + `"}}`,
			fmt.Sprintf(`the [name, value] item of argument "big" is %d bytes, over the 8388608-byte dataset item limit`, len(big)+10)},
		{"a body over --max-body", `{"arguments":{"a":"` + big + `","b":"` + big + `"}}`,
			fmt.Sprintf("request body is %d bytes, over the 16777216-byte request body limit (set by jobx gateway --max-body)", 2*len(big)+29)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := c.post("wf", "leaf", tc.body, "").failure(t, 413, "too_large")
			if e["message"] != tc.want {
				t.Fatalf("want %q, got %q", tc.want, e["message"])
			}
		})
	}
	// A client that sends its whole body before it reads (Python's
	// http.client) gets the answer too, not a broken pipe.
	body := `{"arguments":{"a":"` + big + `","b":"` + big + `"}}`
	for _, tc := range []struct {
		name, header, body, want string
	}{
		{"with a length", fmt.Sprintf("Content-Length: %d\r\n", len(body)), body,
			fmt.Sprintf("request body is %d bytes, over the 16777216-byte request body limit", len(body))},
		{"chunked", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body),
			"request body is more than 16777216 bytes, over the 16777216-byte request body limit"},
	} {
		t.Run("a body over --max-body sent whole, "+tc.name, func(t *testing.T) {
			status, text := c.rawPost(t, "/job/wf/leaf", tc.header, tc.body)
			if status != 413 || !strings.Contains(text, tc.want) {
				t.Fatalf("want 413 %q, got %d %.300s", tc.want, status, text)
			}
		})
	}
	// The gateway still takes requests.
	assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":6}}`, "").pairs(t), sumsOf(6))
}

// rawPost sends a request head (with header) and then body on a fresh
// connection, and reads the answer only once all is sent: a server that
// closed early makes a write fail.
func (c *cluster) rawPost(t *testing.T, path, header, body string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: jobx\r\nContent-Type: application/json\r\n" + header + "\r\n"
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatalf("sending the request: %v (the gateway did not read it)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}
