package seccomp_test

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/jobx/jobx/sandbox/internal/seccomp"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	enosy = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

func mustDefault(t testing.TB) *seccomp.Filter {
	t.Helper()
	f, err := seccomp.Default()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func nativeArch(t testing.TB) uint32 {
	t.Helper()
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.ID)
}

func TestDefaultFitsTheKernelLimit(t *testing.T) {
	f := mustDefault(t)
	t.Logf("default filter: %d instructions", f.Len())
	if f.Len() > seccomp.MaxInstructions {
		t.Errorf("Len() = %d, kernel limit is %d", f.Len(), seccomp.MaxInstructions)
	}
	if got, want := len(f.Bytes()), 8*f.Len(); got != want {
		t.Errorf("len(Bytes()) = %d, want 8*Len() = %d", got, want)
	}
	if again := mustDefault(t); again != f {
		t.Error("Default() compiled the profile twice")
	}
	b := f.Bytes()
	b[0] ^= 0xff
	if f.Bytes()[0] == b[0] {
		t.Error("modifying the result of Bytes() changed the filter")
	}
}

func TestDefaultDecisions(t *testing.T) {
	f := mustDefault(t)
	native := nativeArch(t)
	other := uint32(unix.AUDIT_ARCH_I386)
	if other == native {
		other = unix.AUDIT_ARCH_X86_64
	}
	namespaces := uint64(unix.CLONE_NEWUSER | unix.CLONE_NEWNS)
	type decision struct {
		name string
		nr   uint64
		args [6]uint64
		arch uint32 // native when 0
		want uint32
	}
	tests := []decision{
		{name: "read is allowed", nr: unix.SYS_READ, want: allow},
		{name: "ptrace is allowed, as on any kernel from 4.8", nr: unix.SYS_PTRACE, want: allow},
		{name: "mount is refused with EPERM", nr: unix.SYS_MOUNT, want: eperm},
		{name: "unshare is refused with EPERM", nr: unix.SYS_UNSHARE, want: eperm},
		{name: "keyctl is refused with EPERM", nr: unix.SYS_KEYCTL, want: eperm},
		{name: "bpf is refused with EPERM", nr: unix.SYS_BPF, want: eperm},
		{name: "clone3 gets ENOSYS so that glibc falls back to clone", nr: unix.SYS_CLONE3, want: enosy},
		{name: "clone of a plain child is allowed", nr: unix.SYS_CLONE, args: [6]uint64{uint64(unix.SIGCHLD)}, want: allow},
		{name: "clone of a thread is allowed", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD}, want: allow},
		{name: "clone into new namespaces is refused", nr: unix.SYS_CLONE, args: [6]uint64{namespaces | uint64(unix.SIGCHLD)}, want: eperm},
		{name: "clone with CLONE_PARENT is refused (a child of the zygote would escape the sweep)", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_PARENT | uint64(unix.SIGCHLD)}, want: eperm},
		{name: "socket(AF_UNIX) is allowed", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_UNIX}, want: allow},
		{name: "socket(AF_INET6) is allowed", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET6}, want: allow},
		{name: "socket(AF_MCTP) is allowed", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_MCTP}, want: allow},
		{name: "socket(AF_ALG) is refused", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_ALG}, want: eperm},
		{name: "socket(AF_VSOCK) is refused", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_VSOCK}, want: eperm},
		{name: "socket with a domain beyond 32 bits is refused", nr: unix.SYS_SOCKET, args: [6]uint64{1<<32 | unix.AF_INET}, want: eperm},
		{name: "personality query is allowed", nr: unix.SYS_PERSONALITY, args: [6]uint64{0xffffffff}, want: allow},
		{name: "personality(ADDR_NO_RANDOMIZE) is refused", nr: unix.SYS_PERSONALITY, args: [6]uint64{0x0040000}, want: eperm},
		{name: "a syscall of another architecture gets the default action", nr: unix.SYS_READ, arch: other, want: eperm},
	}
	if runtime.GOARCH == "amd64" {
		tests = append(tests, decision{name: "an x32 syscall gets ENOSYS", nr: 0x40000000 | unix.SYS_READ, want: enosy})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := seccompData{nr: uint32(tt.nr), arch: tt.arch, args: tt.args}
			if d.arch == 0 {
				d.arch = native
			}
			if got, _ := run(t, f, d); got != tt.want {
				t.Errorf("action = %#x, want %#x", got, tt.want)
			}
		})
	}
}

// The filter runs on every syscall; the ones made most are decided within
// a few instructions, however long the chain for a refused one.
func TestHotSyscallsAreDecidedFirst(t *testing.T) {
	f := mustDefault(t)
	native := nativeArch(t)
	for _, nr := range []uint64{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_FUTEX, unix.SYS_EPOLL_PWAIT, unix.SYS_CLOSE, unix.SYS_MMAP, unix.SYS_RT_SIGPROCMASK} {
		action, steps := run(t, f, seccompData{nr: uint32(nr), arch: native})
		if action != allow || steps > 16 {
			t.Errorf("syscall %d: action %#x after %d instructions, want allow within 16", nr, action, steps)
		}
	}
	_, read := run(t, f, seccompData{nr: unix.SYS_READ, arch: native})
	_, mount := run(t, f, seccompData{nr: unix.SYS_MOUNT, arch: native})
	t.Logf("instructions executed: read %d, mount (refused) %d, of %d", read, mount, f.Len())
}

func TestCompile(t *testing.T) {
	native := nativeArch(t)
	enosys := uint(unix.ENOSYS)
	zero := uint(0)
	allowRule := func(args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow, Args: args}
	}
	domain := func(op specs.LinuxSeccompOperator, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: 0, Value: v, Op: op}
	}
	tests := []struct {
		name    string
		profile specs.LinuxSeccomp
		probe   seccompData // run when the profile compiles
		want    uint32
		wantErr string
	}{
		{
			name: "names the architecture lacks are skipped",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"no_such_syscall", "socketcall", "read"}, Action: specs.ActAllow},
			}},
			probe: seccompData{nr: unix.SYS_READ}, want: allow,
		},
		{
			name: "DefaultErrnoRet is the default errno",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &enosys, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActAllow},
			}},
			probe: seccompData{nr: unix.SYS_MOUNT}, want: enosy,
		},
		{
			name: "conditional rules for one syscall are ORed",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(domain(specs.OpEqualTo, unix.AF_UNIX)), allowRule(domain(specs.OpEqualTo, unix.AF_INET)),
			}},
			probe: seccompData{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET}}, want: allow,
		},
		{
			name: "an unconditional rule after conditional ones for the same syscall wins",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(domain(specs.OpEqualTo, unix.AF_UNIX)), allowRule(), allowRule(domain(specs.OpEqualTo, unix.AF_INET)),
			}},
			probe: seccompData{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_VSOCK}}, want: allow,
		},
		{
			name: "a name repeated within and across unconditional rules compiles",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "read"}, Action: specs.ActAllow}, {Names: []string{"read"}, Action: specs.ActAllow},
			}},
			probe: seccompData{nr: unix.SYS_READ}, want: allow,
		},
		{
			name: "masked-equal with zero is none of the bits set",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(specs.LinuxSeccompArg{Index: 1, Value: unix.SOCK_NONBLOCK, Op: specs.OpMaskedEqual}),
			}},
			probe: seccompData{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_NONBLOCK}}, want: eperm,
		},
		{
			name: "masked-equal with zero allows a value without the bits",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(specs.LinuxSeccompArg{Index: 1, Value: unix.SOCK_NONBLOCK, Op: specs.OpMaskedEqual}),
			}},
			probe: seccompData{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC}}, want: allow,
		},
		{
			name: "a masked-equal with a non-zero result is refused",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(specs.LinuxSeccompArg{Index: 1, Value: 3, ValueTwo: 1, Op: specs.OpMaskedEqual}),
			}},
			wantErr: "SCMP_CMP_MASKED_EQ",
		},
		{
			name: "an unknown operator is refused by name",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				allowRule(domain("SCMP_CMP_FUZZY", 1)),
			}},
			wantErr: "SCMP_CMP_FUZZY",
		},
		{
			name: "one syscall under two actions is refused",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"clone3"}, Action: specs.ActAllow},
				{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
			}},
			wantErr: "clone3 has two actions",
		},
		{
			name: "errno 0 is refused",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &zero, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActAllow},
			}},
			wantErr: "errno 0",
		},
		{
			name: "a notify action is refused",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActNotify},
			}},
			wantErr: string(specs.ActNotify),
		},
		{
			name: "a profile for other architectures only is refused",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchS390X}, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActAllow},
			}},
			wantErr: "do not include",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := seccomp.Compile(&tt.profile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Compile() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.probe.arch = native
			if got, _ := run(t, f, tt.probe); got != tt.want {
				t.Errorf("action = %#x, want %#x", got, tt.want)
			}
		})
	}
}
