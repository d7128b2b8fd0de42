package seccomp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBwrap runs programs under bubblewrap with the default filter passed
// to --seccomp on fd 3, as the namespace sandbox does.
func TestBwrap(t *testing.T) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bwrap (Debian package bubblewrap) is required in CI: %v", err)
		}
		t.Skipf("no bwrap: %v", err)
	}
	path := filepath.Join(t.TempDir(), "filter.bpf")
	if err := os.WriteFile(path, mustDefault(t).Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		needs  string // skip unless this file exists
		script string
		want   []string
	}{
		{
			name:   "a shell runs filtered and cannot unshare",
			needs:  "/usr/bin/unshare",
			script: "grep Seccomp: /proc/self/status; unshare --user true; echo ok",
			want:   []string{"Seccomp:\t2\n", "Operation not permitted", "ok\n"},
		},
		{
			// glibc creates threads with clone3 and falls back to clone
			// only on ENOSYS.
			name:   "python starts a thread and opens a socket",
			needs:  "/usr/bin/python3",
			script: `python3 -c 'import socket, threading; t = threading.Thread(target=print, args=("thread ok",)); t.start(); t.join(); socket.socket().close(); print("socket ok")'`,
			want:   []string{"thread ok\n", "socket ok\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.needs); err != nil {
				t.Skip(err)
			}
			filter, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { filter.Close() })
			cmd := exec.Command(bwrap, "--unshare-all",
				"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
				"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				"--proc", "/proc", "--dev", "/dev", "--seccomp", "3",
				"/bin/sh", "-c", tt.script)
			cmd.ExtraFiles = []*os.File{filter}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bwrap: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
