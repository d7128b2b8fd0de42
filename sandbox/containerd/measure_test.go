package containerd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/none"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// TestFigures measures a warm python invocation, beside the process
// sandbox, and a cold sandbox start beside `ctr run` of the same image.
// Figures are logged (go test -v); the test fails only on gross misses.
func TestFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	e := newEnv(t)
	const n = 40
	ctx := context.Background()
	install := func(file, src string) (processors.Program, string) {
		proc, _ := processors.ForFile(file, []byte(src))
		meta, _ := processors.ParseHeader(file, []byte(src))
		name := strings.NewReplacer("/", "_", ".", "_").Replace(file)
		prog, err := proc.Install(filepath.Join(e.dir, "wf"), processors.Handler{Workflow: "wf", Name: name, Type: meta.HandlerType, SourceType: proc.Name(), Source: src})
		if err != nil {
			t.Fatal(err)
		}
		return prog, meta.HandlerType
	}
	prog, typ := install("map/echo.py", sandboxtest.EchoPy)
	spec := func() *sandbox.RunSpec {
		return &sandbox.RunSpec{Workflow: "wf", Handler: "map_echo_py", HandlerType: typ, Program: prog,
			Env: []string{"PATH=/usr/bin:/bin", "JOBX_HANDLER_TYPE=" + typ}, Stdin: strings.NewReader("[\"a\", 1]\n"), Stdout: discardW{}}
	}
	pdir := t.TempDir()
	ps, err := none.New(none.Options{Dir: pdir, Zygotes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for name, sb := range map[string]sandbox.Sandbox{"containerd": e.sb, "none": ps} {
		var ds []time.Duration
		for i := 0; i < n+3; i++ {
			start := time.Now()
			out, err := sb.Run(ctx, spec())
			if err != nil || !out.Succeeded() {
				t.Fatalf("%s: %+v %v", name, out, err)
			}
			if i >= 3 {
				ds = append(ds, time.Since(start))
			}
		}
		t.Logf("warm python invocation, %s sandbox: p50 %s p99 %s", name, ctrd.Percentile(ds, 50), ctrd.Percentile(ds, 99))
	}

	shProg, shTyp := install("map/echo.sh", sandboxtest.EchoSh)
	if err := e.sb.Prepare(ctx, "sh"); err != nil {
		t.Fatal(err)
	}
	var cold, plain []time.Duration
	for i := 0; i < 10; i++ {
		d, err := e.sb.ColdStart(ctx, &sandbox.RunSpec{Workflow: "wf", Handler: "map_echo_sh", HandlerType: shTyp, Program: shProg, Env: []string{"PATH=/usr/bin:/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		cold = append(cold, d)
		d, err = e.sb.CtrRun(ctx, images.Ref("sh"), "/bin/sh", "-c", `echo '{"jobx":"return"}'`)
		if err != nil {
			t.Fatal(err)
		}
		plain = append(plain, d)
	}
	c, p := ctrd.Percentile(cold, 50), ctrd.Percentile(plain, 50)
	t.Logf("cold start (create to first output), sh image: sandbox p50 %s, ctr run p50 %s, ratio %.2f", c, p, float64(c)/float64(p))
	_ = os.Stderr
}

type discardW struct{}

func (discardW) Write(p []byte) (int, error) { return len(p), nil }
