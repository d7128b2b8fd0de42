package sandbox_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/sandbox"
)

// start runs argv as a handler on p's child ends, then closes them here.
func start(t *testing.T, p *sandbox.Pipes, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Stdin, p.Stdout, p.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.CloseChildEnds()
	return cmd
}

// A handler gets its input pumped in and its output and
// errors pumped out to the run's streams.
func TestPipesCarryAHandlersStdio(t *testing.T) {
	p, err := sandbox.NewPipes()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out, errs testenv.Buffer
	cmd := start(t, p, "/bin/sh", "-c", `cat; echo oops >&2`)
	input := strings.Repeat("line of input\n", 20000) // beyond a pipe's buffer
	p.Pump(strings.NewReader(input), sandbox.NewStreams(&sandbox.RunSpec{Stdout: &out, Stderr: &errs}, func() {}))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !p.Finish(time.Second) {
		t.Fatal("the pumps did not reach the end of the output")
	}
	if out.String() != input || errs.String() != "oops\n" {
		t.Fatalf("stdout %d bytes (want %d), stderr %q", len(out.String()), len(input), errs.String())
	}
}

// Output a handler's leftover process holds open does not hold the run:
// Drained says so, and Finish stops the pumps after its grace.
func TestPipesFinishStopsThePumpsALeftoverHolds(t *testing.T) {
	p, err := sandbox.NewPipes()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out testenv.Buffer
	cmd := start(t, p, "/bin/sh", "-c", `echo done; sleep 30 &`)
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	p.Pump(nil, sandbox.NewStreams(&sandbox.RunSpec{Stdout: &out}, func() {}))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if p.Drained(50 * time.Millisecond) {
		t.Fatal("Drained while a leftover process holds the output")
	}
	start := time.Now()
	if p.Finish(100 * time.Millisecond) {
		t.Fatal("Finish reported the output ended")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Finish took %v", d)
	}
	if out.String() != "done\n" {
		t.Fatalf("stdout %q", out.String())
	}
}
