package containerd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// benchSpec installs a python handler and returns a RunSpec maker for it.
func (e *env) benchSpec(tb testing.TB, file, src string) func(reuse string) *sandbox.RunSpec {
	proc, _ := processors.ForFile(file, []byte(src))
	meta, _ := processors.ParseHeader(file, []byte(src))
	name := strings.NewReplacer("/", "_", ".", "_").Replace(file)
	prog, err := proc.Install(filepath.Join(e.dir, "wf"), processors.Handler{Workflow: "wf", Name: name, Type: meta.HandlerType, SourceType: proc.Name(), Source: src})
	if err != nil {
		tb.Fatal(err)
	}
	return func(reuse string) *sandbox.RunSpec {
		return &sandbox.RunSpec{Workflow: "wf", Handler: name, HandlerType: meta.HandlerType, Program: prog, Reuse: reuse,
			Env:   []string{"PATH=/usr/bin:/bin", "JOBX_HANDLER_TYPE=" + meta.HandlerType},
			Stdin: strings.NewReader("[\"a\", 1]\n"), Stdout: discardW{}, Limits: sandbox.Limits{Timeout: 20 * time.Second}}
	}
}

// BenchmarkWarmRun runs a trivial python handler on warm boxes, one
// invocation at a time, then 8 at a time (the runner's concurrency on two
// cores), with and without a reuse key.
func BenchmarkWarmRun(b *testing.B) {
	e := newEnv(b, func(o *ctrd.Options) { o.MaxIdle = 2 })
	echo := e.benchSpec(b, "map/echo.py", sandboxtest.EchoPy)
	echo2 := e.benchSpec(b, "map/echo2.py", sandboxtest.EchoPy)
	ctx := context.Background()
	for _, par := range []int{1, 8} {
		for _, reuse := range []string{"", "r1", "two handlers"} {
			spec := echo
			if reuse == "two handlers" {
				// Alternate two handlers of one key, as a word count's
				// mapper and reducer do.
				var n atomic.Int64
				spec = func(string) *sandbox.RunSpec {
					if n.Add(1)%2 == 0 {
						return echo2("r1")
					}
					return echo("r1")
				}
			}
			b.Run(fmt.Sprintf("concurrency=%d/reuse=%q", par, reuse), func(b *testing.B) {
				var wg sync.WaitGroup
				work := make(chan struct{})
				errs := make(chan error, par)
				for w := 0; w < par; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range work {
							out, err := e.sb.Run(ctx, spec(reuse))
							if err == nil && !out.Succeeded() {
								err = fmt.Errorf("failed: %+v", out)
							}
							if err != nil {
								select {
								case errs <- err:
								default:
								}
							}
						}
					}()
				}
				for i := 0; i < 2*par; i++ { // warm the boxes up
					work <- struct{}{}
				}
				created := e.sb.Created()
				boxCPU, selfCPU := e.sb.BoxCPU(), processCPU()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					work <- struct{}{}
				}
				close(work)
				wg.Wait()
				b.StopTimer()
				select {
				case err := <-errs:
					b.Fatal(err)
				default:
				}
				b.ReportMetric(float64(e.sb.Created()-created)/float64(b.N), "boxes/op")
				// CPU time, which the machine's other load distorts least:
				// the boxes' processes and this one (the sandbox's side).
				b.ReportMetric(float64((e.sb.BoxCPU()-boxCPU).Microseconds())/float64(b.N), "box-cpu-us/op")
				b.ReportMetric(float64((processCPU()-selfCPU).Microseconds())/float64(b.N), "self-cpu-us/op")
			})
		}
	}
}

// processCPU is this process's user and system time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
