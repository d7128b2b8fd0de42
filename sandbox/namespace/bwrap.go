package namespace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jobx/jobx/sandbox/internal/warm"
)

// Paths inside a domain; the same as in the containerd sandbox's
// containers, so a handler sees one layout whichever sandbox runs it.
const (
	boxLib      = warm.LibDir      // jobx-agent, the Python runtime, passwd and group
	boxHandlers = warm.HandlersDir // the workflow's installed handlers (read-only)
	boxScratch  = warm.ScratchRoot // the domain's sized tmpfs: per-run scratch directories
	boxWorking  = warm.WorkingDir  // /working/<workflow>: the shared filesystem
)

// sandboxUID and sandboxGID are the user handlers run as inside a domain.
const sandboxUID, sandboxGID = 65534, 65534

// The descriptors a domain's bubblewrap inherits (exec.Cmd.ExtraFiles
// start at 3).
const (
	fdAgent   = 3 // the agent's listening socket, kept by the agent
	fdZygote  = 4 // the zygote's listening socket, handed to the zygote
	fdSeccomp = 5 // the seccomp program, read by bwrap
	fdInfo    = 6 // bwrap writes {"child-pid": N} here
	fdBlock   = 7 // bwrap waits for a byte here before it runs the agent
)

// systemDirs are the host's top-level directories that programs need: the
// real ones are mounted read-only, the symbolic links (a merged /usr)
// recreated.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// etcFiles are what of the host's /etc the interpreters use: the dynamic
// loader's cache, alternatives (the links of node, awk, ...), time zones,
// name service and TLS configuration, Python's site configuration.
// Everything else of /etc (shadow, the host's names, its services) stays
// out.
var etcFiles = []string{
	"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
	"/etc/localtime", "/etc/timezone", "/etc/nsswitch.conf", "/etc/host.conf",
	"/etc/ssl", "/etc/ca-certificates", "/etc/mime.types", "/etc/protocols", "/etc/services",
	"/etc/python3", "/etc/python3.11", "/etc/python3.12", "/etc/perl", "/etc/nodejs",
}

// systemArgs are the bwrap arguments that build a domain's read-only root
// from the host's system directories.
func systemArgs(lib string) []string {
	var args []string
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				args = append(args, "--symlink", target, d)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", d, d)
		}
	}
	for _, f := range etcFiles {
		args = append(args, "--ro-bind-try", f, f)
	}
	return append(args,
		"--ro-bind", filepath.Join(lib, "etc", "passwd"), "/etc/passwd",
		"--ro-bind", filepath.Join(lib, "etc", "group"), "/etc/group",
		"--ro-bind", filepath.Join(lib, "etc", "hosts"), "/etc/hosts")
}

// domainSpec is what a domain's bubblewrap is asked for.
type domainSpec struct {
	lib      string // host library directory, mounted at boxLib
	handlers string // host handlers directory of the workflow
	shared   string // host shared directory of the workflow ("": none)
	workflow string
	services string // host directory of the runner's services socket ("": none)
	network  string // "host" shares the host's network; anything else: loopback only
	scratch  int64  // bytes of the scratch tmpfs
	python   bool   // run a zygote beside the agent
}

// bwrapArgs returns the bubblewrap command line of a domain: every
// namespace (user, mount, PID, IPC, UTS, cgroup, and network unless the
// handler asked for the host's), a read-only root of the host's system
// directories, the library, the workflow's handlers and shared directory,
// a sized tmpfs for scratch, no capabilities, no_new_privs, the seccomp
// filter, and the agent as PID 1.
func bwrapArgs(sp domainSpec) []string {
	args := []string{
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--uid", strconv.Itoa(sandboxUID), "--gid", strconv.Itoa(sandboxGID),
		"--disable-userns",
		"--hostname", "jobx",
		"--die-with-parent", "--new-session", "--as-pid-1",
		"--cap-drop", "ALL",
	}
	if sp.network != "host" {
		args = append(args, "--unshare-net")
	}
	args = append(args, systemArgs(sp.lib)...)
	args = append(args,
		"--proc", "/proc", "--dev", "/dev",
		"--dir", "/tmp",
		"--perms", "0755", "--size", strconv.FormatInt(sp.scratch, 10), "--tmpfs", boxScratch,
		"--ro-bind", sp.lib, boxLib,
		"--ro-bind", sp.handlers, boxHandlers,
	)
	if sp.shared != "" {
		args = append(args, "--bind", sp.shared, boxWorking+"/"+sp.workflow)
	}
	if sp.services != "" {
		// Connecting to the socket needs no write access to the mount.
		args = append(args, "--ro-bind", sp.services, sp.services)
	}
	if sp.network == "host" {
		args = append(args, "--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf")
	}
	args = append(args,
		"--remount-ro", "/",
		"--chdir", "/",
		"--seccomp", strconv.Itoa(fdSeccomp),
		"--info-fd", strconv.Itoa(fdInfo),
		"--block-fd", strconv.Itoa(fdBlock),
		"--",
		boxLib+"/jobx-agent")
	if sp.python {
		args = append(args, "--zygote-fd", strconv.Itoa(fdZygote), "fd:"+strconv.Itoa(fdAgent),
			"python3", boxLib+"/jobx_runtime.py", "zygote", "fd:3")
	} else {
		args = append(args, "fd:"+strconv.Itoa(fdAgent))
	}
	return args
}

// domainEnv is the environment of a domain's agent and zygote; each run
// gets its own.
var domainEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
	"HOME=" + boxScratch, "TMPDIR=" + boxScratch,
	// One run at a time per domain: one pre-forked child is enough, and on
	// two cores a warm-up run costs more CPU than it saves.
	"JOBX_ZYGOTE_PREFORK=1", "JOBX_ZYGOTE_WARMUP=0",
}

// Unavailable is the error of a host where the namespace sandbox cannot
// run: why, and how to fix it.
type Unavailable struct {
	Reason string
	Fix    string
}

func (e *Unavailable) Error() string {
	return "the namespace sandbox cannot run here: " + e.Reason + "; fix: " + e.Fix
}

// Check runs a trivial sandbox, every namespace with /bin/true, as the user
// domains run as (asUID and asGID when the caller is root), and returns nil
// when it works, or an *Unavailable that says why not and what to change.
func Check(ctx context.Context, bwrap string, asUID, asGID int) error {
	if bwrap == "" {
		p, err := exec.LookPath("bwrap")
		if err != nil {
			return &Unavailable{Reason: "bubblewrap (bwrap) is not installed", Fix: "apt-get install bubblewrap (Debian, Ubuntu), dnf install bubblewrap (Fedora)"}
		}
		bwrap = p
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := []string{"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
		"--uid", strconv.Itoa(sandboxUID), "--gid", strconv.Itoa(sandboxGID), "--die-with-parent", "--as-pid-1"}
	for _, d := range systemDirs {
		args = append(args, "--ro-bind-try", d, d)
	}
	args = append(args, "--proc", "/proc", "--dev", "/dev", "--size", "1048576", "--tmpfs", "/scratch", "--", "/bin/true")
	cmd := exec.CommandContext(ctx, bwrap, args...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(asUID), Gid: uint32(asGID), Groups: []uint32{}}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return unavailableFrom(strings.TrimSpace(stderr.String()), err)
	}
	return nil
}

// unavailableFrom explains a failed bubblewrap start from the kernel's
// switches for user namespaces.
func unavailableFrom(msg string, err error) *Unavailable {
	if msg == "" {
		msg = err.Error()
	}
	reason := "bubblewrap could not create the sandbox's namespaces: " + msg
	switch {
	case readSysctl("/proc/sys/user/max_user_namespaces") == "0":
		return &Unavailable{Reason: reason + " (user.max_user_namespaces is 0)", Fix: "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d to keep it)"}
	case readSysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
		return &Unavailable{Reason: reason + " (kernel.unprivileged_userns_clone is 0)", Fix: "sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d to keep it)"}
	case readSysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
		return &Unavailable{Reason: reason + " (AppArmor restricts unprivileged user namespaces)", Fix: "an AppArmor profile that allows userns for /usr/bin/bwrap, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"}
	case errors.Is(err, exec.ErrNotFound):
		return &Unavailable{Reason: "bubblewrap (bwrap) is not installed", Fix: "apt-get install bubblewrap"}
	}
	return &Unavailable{Reason: reason, Fix: "run where unprivileged user namespaces are allowed (docs/sandboxes.md), or use --sandbox containerd"}
}

func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// describe returns a short description of the bwrap command line for logs.
func describe(args []string) string { return fmt.Sprintf("bwrap %s", strings.Join(args, " ")) }
