package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

// result is one jobx run.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs jobx commands against one embedded etcd.
type cli struct {
	t        *testing.T
	endpoint string
	store    *kvmodel.Store
	env      map[string]string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	ep, c := testenv.Etcd(t)
	return &cli{t: t, endpoint: ep, store: kvmodel.NewStore(c), env: map[string]string{"JOBX_ETCD": ep}}
}

// run runs jobx with args and stdin.
func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(k string) string { return c.env[k] })
	return result{out.String(), errb.String(), code}
}

// ok runs jobx and fails the test unless it exits 0; it returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 0 {
		c.t.Fatalf("jobx %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs jobx, expects a non-zero exit and returns stderr.
func (c *cli) fails(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code == 0 {
		c.t.Fatalf("jobx %s succeeded; stdout: %s", strings.Join(args, " "), r.stdout)
	}
	return r.stderr
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
