package seccomp_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jobx/jobx/sandbox/internal/seccomp"
)

const (
	// childEnv makes the test binary, run again by TestInstall, confine
	// itself and probe (see TestMain).
	childEnv = "JOBX_SECCOMP_CHILD"
	// fileEnv names a file the child reads back.
	fileEnv     = "JOBX_SECCOMP_FILE"
	fileContent = "read under seccomp\n"
)

// TestInstall runs the test binary again as a child that installs the
// default filter and reports on stdout, as a JSON object, what each probe
// got: "ok", an errno name or a value.
func TestInstall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(path, []byte(fileContent), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", fileEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, out, stderr.Bytes())
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("child output %q: %v\nstderr: %s", out, err, stderr.Bytes())
	}
	want := map[string]string{
		"getpid":                         "ok",
		"read a file":                    fileContent,
		"fork and exec /bin/true":        "ok",
		"fork into a new user namespace": "EPERM",
		"unshare(CLONE_NEWUSER)":         "EPERM",
		"clone3":                         "ENOSYS",
		"mount":                          "EPERM",
		"keyctl":                         "EPERM",
		"socket(AF_UNIX)":                "ok",
		"socket(AF_INET)":                "ok",
		"socket(AF_VSOCK)":               "EPERM", // the profile leaves AF_VSOCK out
		"socket(AF_ALG)":                 "EPERM", // and AF_ALG
		"personality query":              "ok",
		"status Seccomp":                 "2",
		"status NoNewPrivs":              "1",
		// A thread that existed before Install is filtered too (TSYNC).
		"old thread Seccomp":                "2",
		"old thread NoNewPrivs":             "1",
		"old thread unshare(CLONE_NEWUSER)": "EPERM",
	}
	for probe, w := range want {
		if g, ok := got[probe]; !ok {
			t.Errorf("%s: no result", probe)
		} else if g != w {
			t.Errorf("%s: got %q, want %q", probe, g, w)
		}
	}
}

// runChild installs the default filter in this process, runs the probes
// and prints their results. It returns the exit code.
func runChild() int {
	f, err := seccomp.Default()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// A thread started before Install, kept by its goroutine.
	oldThread := make(chan map[string]string)
	start := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(ready)
		<-start
		r := statusOf("/proc/thread-self/status", "old thread ")
		r["old thread unshare(CLONE_NEWUSER)"] = outcome(unix.Unshare(unix.CLONE_NEWUSER))
		oldThread <- r
	}()
	<-ready

	if err := f.Install(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	r := statusOf("/proc/self/status", "status ")
	close(start)
	for k, v := range <-oldThread {
		r[k] = v
	}
	if pid, _, errno := unix.Syscall(unix.SYS_GETPID, 0, 0, 0); errno != 0 {
		r["getpid"] = outcome(errno)
	} else if int(pid) == os.Getpid() {
		r["getpid"] = "ok"
	}
	if b, err := os.ReadFile(os.Getenv(fileEnv)); err != nil {
		r["read a file"] = outcome(err)
	} else {
		r["read a file"] = string(b)
	}
	r["fork and exec /bin/true"] = outcome(exec.Command("/bin/true").Run())
	userns := exec.Command("/bin/true")
	userns.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
	r["fork into a new user namespace"] = outcome(userns.Run())
	r["unshare(CLONE_NEWUSER)"] = outcome(unix.Unshare(unix.CLONE_NEWUSER))
	r["clone3"] = clone3()
	r["mount"] = outcome(unix.Mount("none", "/nonexistent/jobx-seccomp", "tmpfs", 0, ""))
	_, err = unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	r["keyctl"] = outcome(err)
	for name, domain := range map[string]int{"AF_UNIX": unix.AF_UNIX, "AF_INET": unix.AF_INET, "AF_VSOCK": unix.AF_VSOCK, "AF_ALG": unix.AF_ALG} {
		typ := unix.SOCK_STREAM
		if domain == unix.AF_ALG {
			typ = unix.SOCK_SEQPACKET
		}
		fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		r["socket("+name+")"] = outcome(err)
	}
	_, _, errno := unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	r["personality query"] = outcome(errno)

	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// clone3 calls clone3 with a zeroed struct clone_args (the size of its
// second version), which unfiltered would fork.
func clone3() string {
	var args [88]byte
	pid, _, errno := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	if errno == 0 && pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return outcome(errno)
}

// statusOf returns the Seccomp and NoNewPrivs fields of a proc status file,
// keyed by prefix and field name.
func statusOf(path, prefix string) map[string]string {
	r := map[string]string{}
	file, err := os.Open(path)
	if err != nil {
		r[prefix+"Seccomp"] = outcome(err)
		return r
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		if key == "Seccomp" || key == "NoNewPrivs" {
			r[prefix+key] = strings.TrimSpace(value)
		}
	}
	return r
}

// outcome names what a call got: "ok" or its errno.
func outcome(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil, errors.Is(err, syscall.Errno(0)):
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
