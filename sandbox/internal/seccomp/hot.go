package seccomp

import "cmp"

// hot lists syscalls in the order of how often handlers (Go, Python and
// Node runtimes, shells) make them, most frequent first. The filter runs
// on every syscall and is a linear chain of compares, one per name, so a
// name's place here is the number of compares it costs. Names not listed
// keep the profile's order after these. Some (clock_gettime,
// gettimeofday, getcpu) are usually answered by the vDSO and reach the
// filter only when it is unavailable.
var hot = []string{
	// I/O, the event loops of Go, Node and Python, and the Go runtime's
	// memory and signals (it preempts goroutines with signals).
	"read", "write", "close", "futex", "epoll_pwait", "epoll_wait",
	"mmap", "munmap", "rt_sigprocmask", "rt_sigreturn", "recvmsg",
	"sendmsg", "recvfrom", "sendto",
	// Files: interpreters stat and open a lot while importing.
	"newfstatat", "fstat", "statx", "openat", "lseek",
	// Time, threads and scheduling.
	"getpid", "gettid", "tgkill", "clock_gettime", "nanosleep",
	"clock_nanosleep", "sched_yield", "wait4", "brk", "madvise",
	"mprotect", "ioctl", "poll", "ppoll", "select", "pselect6",
	"epoll_ctl", "epoll_pwait2", "readv", "writev", "pread64", "pwrite64",
	// Processes and descriptors.
	"pipe2", "dup", "dup3", "dup2", "fcntl", "getdents64", "readlink",
	"readlinkat", "access", "faccessat2", "faccessat", "stat", "lstat",
	"execve", "clone", "exit_group", "exit", "waitid", "rt_sigaction",
	"sigaltstack", "mremap", "gettimeofday", "getrandom", "getcwd",
	"set_robust_list", "rseq", "prlimit64", "sched_getaffinity", "uname",
	"getuid", "geteuid", "getgid", "getegid", "getppid",
	// Sockets.
	"socket", "connect", "accept4", "setsockopt", "getsockopt",
	"getsockname", "getpeername", "shutdown", "bind", "listen",
	"epoll_create1", "eventfd2", "pidfd_open", "pidfd_send_signal",
}

var heat = func() map[string]int {
	m := make(map[string]int, len(hot))
	for i, name := range hot {
		m[name] = len(hot) - i
	}
	return m
}()

// byHeat orders syscall names hottest first; names not in hot compare
// equal, so a stable sort keeps their order.
func byHeat(a, b string) int {
	return cmp.Compare(heat[b], heat[a])
}
