package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install confines the calling process with f: it sets the no_new_privs bit
// and loads the program with SECCOMP_FILTER_FLAG_TSYNC, so every thread of
// the process, present and future, is filtered (TSYNC also gives the other
// threads no_new_privs). Neither can be undone; children inherit both.
//
// go-seccomp-bpf's LoadFilter would assemble its policy again and cannot
// take a finished program, hence the two system calls here.
func (f *Filter) Install() error {
	if len(f.raw) == 0 {
		return fmt.Errorf("seccomp: empty filter")
	}
	prog := make([]unix.SockFilter, len(f.raw))
	for i, ins := range f.raw {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}

	// no_new_privs is a property of a thread: set it on the thread that
	// then calls seccomp.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	tid, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: load filter: %w", errno)
	}
	if tid != 0 {
		return fmt.Errorf("seccomp: load filter: thread %d cannot take it", tid)
	}
	return nil
}
