// Package sandbox declares what the runner needs to run a handler in
// isolation: the Sandbox interface, a run's spec, limits and outcome, and the
// stdio plumbing its implementations share. Each implementation is a package
// of its own: namespace (Linux namespaces through bubblewrap, the default
// where no containerd answers), containerd (warm containers) and none (plain
// subprocesses, no isolation; only when asked for by name). The command picks
// one; sandboxtest is the contract every implementation passes.
package sandbox

import (
	"context"
	"io"
	"time"

	"github.com/jobx/jobx/processors"
)

// Sandbox runs one handler invocation in isolation. The runner declares it;
// the namespace, containerd and none packages satisfy it. Implementations
// must be safe for concurrent use.
type Sandbox interface {
	// Run runs spec's program to completion. A non-nil error means the
	// sandbox itself failed (the invocation may be retried elsewhere); a
	// handler's own failure is reported in the Outcome.
	Run(ctx context.Context, spec *RunSpec) (*Outcome, error)
	// Kind names the sandbox ("namespace", "containerd", "none").
	Kind() string
	// Close releases warm processes and containers.
	Close() error
}

// RunSpec is one handler run.
type RunSpec struct {
	Workflow    string
	Handler     string
	HandlerType string
	Invocation  string
	// Processor names the handler's language processor ("python",
	// "node", "sh", "exec"): sandboxes keep warm interpreters per
	// processor.
	Processor string
	Program   processors.Program
	Env       []string // complete environment, KEY=VALUE
	Stdin     io.Reader
	Stdout    io.Writer // receives the handler's stdout as written
	Stderr    io.Writer // receives every stderr byte (the sandbox also keeps a tail)
	Limits    Limits
	// ServicesSocket is the host path of the runner's services endpoint
	// (sessions, notifications), also named in Env as JOBX_SERVICES; a
	// sandbox with its own mount namespace bind-mounts its directory at
	// the same path.
	ServicesSocket string
	// SharedDir is the host directory of the workflow's shared filesystem
	// when its backend is local ("" otherwise): a sandbox mounts it
	// read-write (and nothing else of the host) and sets JOBX_FS_ROOT to
	// where the handler sees it; the process sandbox leaves it in place.
	SharedDir string
	// Reuse, when set, is the key under which a warm sandbox may run this
	// invocation in a process kept from an earlier successful run of the
	// same handler with the same key (derived from the request id for a
	// handler whose header says `reuse: request`, from the handler for
	// `reuse: handler`); sandboxes may ignore it.
	Reuse string
}

// Limits bound one handler run. Zero values mean no limit.
type Limits struct {
	Timeout   time.Duration
	Memory    int64 // bytes
	CPU       float64
	Pids      int64
	MaxOutput int64 // bytes of stdout
	Network   string
	// Scratch bounds the bytes a run may write under its scratch directory
	// (JOBX_SCRATCH, HOME, TMPDIR); a write past it fails with ENOSPC.
	Scratch int64
}

// Outcome is how a handler run ended.
type Outcome struct {
	ExitCode       int
	Signal         string // "killed", "terminated", ... when killed by a signal
	TimedOut       bool
	OOMKilled      bool
	OutputExceeded bool
	StderrTail     string
	Duration       time.Duration
	Warm           bool // ran on a warm interpreter or sandbox
}

// Succeeded reports a clean exit.
func (o *Outcome) Succeeded() bool {
	return o.ExitCode == 0 && o.Signal == "" && !o.TimedOut && !o.OOMKilled && !o.OutputExceeded
}

// StderrTailSize is how many bytes of stderr an Outcome keeps.
const StderrTailSize = 4096

// Streams wires a handler's stdio for a Sandbox: stdout through the
// output limit (calling kill when it is exceeded), stderr into a tail and
// the RunSpec's writer. Sandboxes copy the handler's pipes into Stdout and
// Stderr.
type Streams struct {
	Stdout io.Writer
	Stderr io.Writer
	out    *limitWriter
	tail   *tailBuffer
}

// NewStreams returns the streams of one run of spec.
func NewStreams(spec *RunSpec, kill func()) *Streams {
	st := &Streams{
		out:  &limitWriter{w: spec.Stdout, limit: spec.Limits.MaxOutput, onExceed: kill},
		tail: &tailBuffer{n: StderrTailSize},
	}
	st.Stdout, st.Stderr = st.out, io.Writer(st.tail)
	if spec.Stderr != nil {
		st.Stderr = io.MultiWriter(st.tail, spec.Stderr)
	}
	return st
}

// Exceeded reports whether stdout went over the output limit.
func (s *Streams) Exceeded() bool { return s.out.exceeded }

// Tail returns the last StderrTailSize bytes of stderr.
func (s *Streams) Tail() string { return s.tail.String() }

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n   int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// limitWriter passes writes to w until limit bytes, then reports overflow.
type limitWriter struct {
	w        io.Writer
	limit    int64
	n        int64
	exceeded bool
	onExceed func()
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.exceeded {
		return len(p), nil
	}
	if l.limit > 0 && l.n+int64(len(p)) > l.limit {
		l.exceeded = true
		if l.onExceed != nil {
			l.onExceed()
		}
		return len(p), nil
	}
	l.n += int64(len(p))
	return l.w.Write(p)
}
