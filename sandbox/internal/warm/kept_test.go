package warm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// A kept descriptor renders the file afresh at every read: the children a
// process forks after the first read are in the next one, and those that
// exited are gone.
func TestKeptRendersAProcessFileAfresh(t *testing.T) {
	zygote, fork := startForker(t)
	z := strconv.Itoa(zygote)
	k := NewKept("/proc/" + z + "/task/" + z + "/children")
	defer k.Close()
	if kids, err := k.Pids(); err != nil || len(kids) != 0 {
		t.Fatalf("before any fork: %v %v", kids, err)
	}
	a, b := fork(), fork()
	kids, err := k.Pids()
	if err != nil || !slices.Contains(kids, a) || !slices.Contains(kids, b) {
		t.Fatalf("after two forks: %v %v, want %d and %d", kids, err, a, b)
	}
	if kids, _ := k.Pids(); !slices.Equal(kids, must(Children(zygote))) {
		t.Fatalf("kept read %v, a fresh open reads %v", kids, must(Children(zygote)))
	}
}

// A process's file read through a kept descriptor stays that process's:
// once it has exited, a read finds nothing (or fails), whatever now holds
// its pid.
func TestKeptFailsOnceItsProcessExited(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(cmd.Process.Pid)
	k := NewKept("/proc/" + p + "/task/" + p + "/children")
	defer k.Close()
	if _, err := k.Read(); err != nil {
		t.Fatalf("a live process: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if pids, err := k.Pids(); len(pids) != 0 {
		t.Fatalf("the exited process's children read %v (%v), want none", pids, err)
	}
}

// A file larger than the first buffer is read whole, and a closed Kept
// reads nothing.
func TestKeptReadsALargeFileWholeAndNothingOnceClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pids")
	var want bytes.Buffer
	for i := range 3000 {
		want.WriteString(strconv.Itoa(100000+i) + "\n")
	}
	if err := os.WriteFile(path, want.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	k := NewKept(path)
	got, err := k.Read()
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, want.Len())
	}
	if pids, _ := k.Pids(); len(pids) != 3000 || pids[2999] != 102999 {
		t.Fatalf("pids: %d, last %v", len(pids), pids[len(pids)-1:])
	}
	k.Close()
	if _, err := k.Read(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("a closed Kept: %v, want os.ErrClosed", err)
	}
}

// OOMKills reads the oom_kill line of a memory.events (v2) or
// memory.oom_control (v1) file.
func TestKeptOOMKills(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"), 0o600)
	if n := OOMEvents(dir, true).OOMKills(); n != 2 {
		t.Errorf("v2: %d, want 2", n)
	}
	if n := OOMEvents(dir, false).OOMKills(); n != 7 {
		t.Errorf("v1: %d, want 7", n)
	}
	if n := OOMEvents(filepath.Join(dir, "gone"), true).OOMKills(); n != 0 {
		t.Errorf("no file: %d, want 0", n)
	}
}

// A cgroup's processes are read afresh at every read, on cgroup v1 (which
// would serve a kept descriptor the list it loaded at its first read) as on
// v2: a process added since the last read is in the next one, one that
// exited is not.
func TestCgroupProcsReadsTheCgroupAfresh(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs root")
	}
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	v2 := err == nil
	dir := "/sys/fs/cgroup/pids/jobx-kept-test-" + RandomHex(4)
	if v2 {
		dir = "/sys/fs/cgroup/jobx-kept-test-" + RandomHex(4)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	a := start()
	var b *exec.Cmd
	t.Cleanup(func() {
		for _, c := range []*exec.Cmd{a, b} {
			if c != nil {
				c.Process.Kill()
				c.Wait()
			}
		}
		os.Remove(dir)
	})
	k := CgroupProcs(dir, v2)
	defer k.Close()
	if pids, err := k.Pids(); err != nil || !slices.Equal(pids, []int{a.Process.Pid}) {
		t.Fatalf("one process: %v %v, want [%d]", pids, err, a.Process.Pid)
	}
	b = start()
	if pids, _ := k.Pids(); !slices.Contains(pids, b.Process.Pid) || len(pids) != 2 {
		t.Fatalf("after a second joined: %v, want %d and %d", pids, a.Process.Pid, b.Process.Pid)
	}
	a.Process.Kill()
	a.Wait()
	if pids, _ := k.Pids(); !slices.Equal(pids, []int{b.Process.Pid}) {
		t.Fatalf("after the first exited: %v, want [%d]", pids, b.Process.Pid)
	}
}
