package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/internal/warm"
)

// ColdStart measures one cold sandbox for spec: from container creation to
// the handler's first byte of output, on a new container that is destroyed
// afterwards (the pool is not used). spec.Stdin is ignored.
func (s *Sandbox) ColdStart(ctx context.Context, spec *sandbox.RunSpec) (time.Duration, error) {
	k := s.keyOf(spec)
	start := time.Now()
	b, err := s.create(ctx, k)
	if err != nil {
		return 0, err
	}
	defer s.destroy(b)
	first := make(chan time.Time, 1)
	fw := &firstWriter{ch: first}
	sp := *spec
	sp.Stdout, sp.Stdin = fw, strings.NewReader("")
	out, settle, err := b.Run(ctx, warm.Run{Spec: &sp, Rewrite: s.host.Rewriter(sp.Workflow)})
	settle()
	if err != nil {
		return 0, err
	}
	if !out.Succeeded() {
		return 0, fmt.Errorf("cold start run failed: %+v", out)
	}
	select {
	case t := <-first:
		return t.Sub(start), nil
	default:
		return 0, fmt.Errorf("cold start run wrote nothing")
	}
}

type firstWriter struct {
	ch   chan time.Time
	done bool
}

func (w *firstWriter) Write(p []byte) (int, error) {
	if !w.done && len(p) > 0 {
		w.done = true
		w.ch <- time.Now()
	}
	return len(p), nil
}

// CtrRun measures a plain `ctr run --rm` of image ref in the sandbox's
// namespace (the image must be loaded, e.g. by Prepare): from the command's
// start to its first line of output. It is the reference for ColdStart.
func (s *Sandbox) CtrRun(ctx context.Context, ref string, args ...string) (time.Duration, error) {
	id := "jx-ctr-" + warm.RandomHex(4)
	argv := append([]string{"-a", s.opts.Address, "-n", s.opts.Namespace, "run", "--rm", "--snapshotter", "overlayfs", ref, id}, args...)
	cmd := exec.CommandContext(ctx, "ctr", argv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	r := bufio.NewReader(out)
	_, rerr := r.ReadString('\n')
	d := time.Since(start)
	r.WriteTo(discard{})
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("ctr run: %w", err)
	}
	if rerr != nil {
		return 0, fmt.Errorf("ctr run: no output: %w", rerr)
	}
	return d, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Percentile returns the p-th percentile (0-100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}
