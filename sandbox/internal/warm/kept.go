package warm

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A Kept reads a small kernel file (a cgroup's cgroup.procs or
// memory.events, a process's children) through a descriptor opened at the
// first read and kept until Close: each read is then a pread from offset 0,
// which makes the kernel render the file afresh, instead of an open, a
// stat, reads and a close. A box reads such files before and after every
// run, and on this kind of host a system call is dear: the kept
// descriptor took a cgroup file's read from about 20 µs to 3 µs.
//
// A process's file read through a kept descriptor stays that process's:
// once it has exited, reads find nothing (or fail), never a process that
// reused its pid. A Kept is safe for concurrent use.
type Kept struct {
	mu     sync.Mutex
	path   string
	reopen bool // open the file for every read (see CgroupProcs)
	f      *os.File
	buf    []byte
	closed bool
}

// NewKept returns a Kept for path; nothing is opened until the first Read.
func NewKept(path string) *Kept { return &Kept{path: path} }

// CgroupProcs returns a Kept over the cgroup.procs of cgroup directory
// dir. On cgroup v1 it opens the file for every read: v1 renders
// cgroup.procs from a pid list it loads at an open file's first read and
// keeps (for a second after the last read), so a kept descriptor would
// read a list up to a second stale, missing the processes started since.
// v2 lists the cgroup's processes afresh at every read from offset 0.
func CgroupProcs(dir string, v2 bool) *Kept {
	return &Kept{path: dir + "/cgroup.procs", reopen: !v2}
}

// Read returns the file's whole content, rendered at this call.
func (k *Kept) Read() ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, os.ErrClosed
	}
	if k.f == nil {
		f, err := os.Open(k.path)
		if err != nil {
			return nil, err
		}
		k.f = f
		if k.buf == nil {
			k.buf = make([]byte, 4096)
		}
	}
	data, err := k.readAll()
	if k.reopen {
		k.f.Close()
		k.f = nil
	}
	return data, err
}

// readAll reads k.f whole from offset 0; k.mu is held.
func (k *Kept) readAll() ([]byte, error) {
	for {
		// ReadAt reads until the buffer is full or the file ends: a short
		// first pread is continued, never taken for the whole file.
		n, err := k.f.ReadAt(k.buf, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n < len(k.buf) {
			return append([]byte(nil), k.buf[:n]...), nil
		}
		k.buf = make([]byte, 2*len(k.buf))
	}
}

// Pids reads the file as pids separated by white space (cgroup.procs, a
// process's children).
func (k *Kept) Pids() ([]int, error) {
	data, err := k.Read()
	if err != nil {
		return nil, err
	}
	return appendPids(nil, data), nil
}

// Close closes the descriptor; a later Read fails.
func (k *Kept) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	return err
}

// OOMEvents returns a Kept over the file of the cgroup in directory memory
// that counts the processes its memory limit killed: cgroup v1's
// memory.oom_control, v2's memory.events. Its OOMKills reads the count.
func OOMEvents(memory string, v2 bool) *Kept {
	name := "memory.oom_control"
	if v2 {
		name = "memory.events"
	}
	return NewKept(memory + "/" + name)
}

// OOMKills returns the count of a Kept made by OOMEvents; 0 when the file
// cannot be read.
func (k *Kept) OOMKills() int64 {
	data, err := k.Read()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
