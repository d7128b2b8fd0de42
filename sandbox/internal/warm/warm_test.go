package warm

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A stand-in zygote: a shell that starts a child each time it reads a
// line, and prints the child's pid.
func startForker(t *testing.T) (pid int, fork func() int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `while read x; do sleep 300 & echo $!; done`)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for _, k := range must(Children(cmd.Process.Pid)) {
			syscall.Kill(k, syscall.SIGKILL)
		}
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	r := bufio.NewReader(out)
	return cmd.Process.Pid, func() int {
		in.Write([]byte("x\n"))
		line, _ := r.ReadString('\n')
		n, _ := strconv.Atoi(strings.TrimSpace(line))
		return n
	}
}

func must(pids []int, _ error) []int { return pids }

// The zygote forks its next pre-forked child while a box settles: a child
// it forks after the box's processes were listed is spared, whatever it
// missed of the listing.
func TestKillExtraSparesAChildTheZygoteForksMeanwhile(t *testing.T) {
	zygote, fork := startForker(t)
	before := fork() // a child the zygote had already
	var during int
	b := &Box{Agent: os.Getpid(), Zygote: zygote, Procs: func() []int {
		during = fork() // forked while the processes are listed
		return []int{zygote, before, during}
	}}
	if n := b.KillExtra(); n != 0 {
		t.Fatalf("KillExtra killed %d of the zygote's children", n)
	}
	time.Sleep(50 * time.Millisecond)
	for _, p := range []int{before, during} {
		if err := syscall.Kill(p, 0); err != nil {
			t.Fatalf("the zygote's child %d was killed: %v", p, err)
		}
	}
}

// What is not the agent, the zygote or the zygote's child is killed.
func TestKillExtraKillsWhatIsNotTheZygotes(t *testing.T) {
	zygote, fork := startForker(t)
	kid := fork()
	stray := exec.Command("sleep", "300")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	defer stray.Wait()
	b := &Box{Agent: os.Getpid(), Zygote: zygote, Procs: func() []int { return []int{zygote, kid, stray.Process.Pid} }}
	if n := b.KillExtra(); n != 1 {
		t.Fatalf("KillExtra killed %d, want the one stray process", n)
	}
	if err := stray.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the stray process: %v", err)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A box keeps one descriptor for its zygote's children from its first
// sweep, and closes it with the box; a sweep after Close opens none.
func TestABoxKeepsItsZygoteDescriptorUntilClosed(t *testing.T) {
	zygote, fork := startForker(t)
	kid := fork()
	before := openFDs(t)
	b := &Box{Agent: os.Getpid(), Zygote: zygote, Procs: func() []int { return []int{zygote, kid} }}
	if n := b.KillExtra(); n != 0 {
		t.Fatalf("KillExtra killed %d of the zygote's own", n)
	}
	b.KillExtra()
	if n := openFDs(t); n != before+1 {
		t.Fatalf("%d descriptors open after two sweeps, want %d (one kept)", n, before+1)
	}
	b.Close()
	if n := openFDs(t); n != before {
		t.Fatalf("%d descriptors open after Close, want %d", n, before)
	}
	late := &Box{Agent: os.Getpid(), Zygote: zygote, Procs: func() []int { return nil }}
	late.Close()
	late.KillExtra()
	if n := openFDs(t); n != before {
		t.Fatalf("a sweep after Close left %d descriptors open, want %d", n, before)
	}
}
