// Package seccomp compiles containerd's default seccomp profile into a
// classic BPF program, the form bubblewrap's --seccomp option loads: a raw
// array of struct sock_filter in native byte order, as seccomp_export_bpf
// writes it.
//
// The namespace sandbox passes the program to bwrap on an inherited file
// descriptor:
//
//	f, err := seccomp.Default()
//	if err != nil {
//		return err
//	}
//	// r is a file or pipe whose content is f.Bytes().
//	cmd := exec.Command("bwrap", "--seccomp", "3", ...)
//	cmd.ExtraFiles = []*os.File{r}
//
// A Go process can also confine itself with [Filter.Install].
//
// The program is built with github.com/elastic/go-seccomp-bpf, which
// emits a linear chain of compares; names are ordered so that the
// syscalls made most often are decided within a few instructions.
package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	containerdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// MaxInstructions is the kernel's limit on the length of one seccomp
// program (BPF_MAXINSNS); Compile refuses a longer one.
const MaxInstructions = 4096

// sockFilterSize is the size of struct sock_filter: u16 code, u8 jt,
// u8 jf, u32 k.
const sockFilterSize = 8

// Filter is a compiled seccomp program for the running architecture, made
// by Compile or Default. It is immutable and safe for concurrent use.
type Filter struct {
	raw []bpf.RawInstruction
}

var defaultFilter = sync.OnceValues(func() (*Filter, error) {
	// No capabilities: the profile containerd gives an unprivileged
	// container (no mount, unshare, setns, bpf, clone3, namespace flags
	// to clone, ...).
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	profile := containerdseccomp.DefaultProfile(spec)
	RefuseCloneParent(profile)
	f, err := Compile(profile)
	if err != nil {
		return nil, fmt.Errorf("containerd default profile: %w", err)
	}
	return f, nil
})

// RefuseCloneParent adds CLONE_PARENT to the clone flags profile p
// refuses. jobx's sandboxes tell a run's leftovers from the processes they
// keep by the process tree (a Python zygote's children are its own); with
// CLONE_PARENT a handler could make a child of its zygote.
func RefuseCloneParent(p *specs.LinuxSeccomp) {
	for i, rule := range p.Syscalls {
		if !slices.Contains(rule.Names, "clone") {
			continue
		}
		for j, arg := range rule.Args {
			if arg.Op == specs.OpMaskedEqual && arg.ValueTwo == 0 {
				p.Syscalls[i].Args[j].Value |= unix.CLONE_PARENT
			}
		}
	}
}

// Default returns containerd's default seccomp profile for a container
// without capabilities, with clone's CLONE_PARENT refused too, compiled
// for the running architecture. It is
// compiled on the first call; later calls return the same Filter (or the
// same error: an architecture go-seccomp-bpf has no syscall table for,
// such as riscv64 or s390x, never works).
func Default() (*Filter, error) {
	return defaultFilter()
}

// Len returns the number of instructions in the program.
func (f *Filter) Len() int {
	return len(f.raw)
}

// Bytes returns the program as an array of struct sock_filter in native
// byte order, Len()*8 bytes, the format bwrap --seccomp reads. The slice
// is a fresh copy the caller may keep or modify.
func (f *Filter) Bytes() []byte {
	b := make([]byte, 0, len(f.raw)*sockFilterSize)
	for _, ins := range f.raw {
		b = binary.NativeEndian.AppendUint16(b, ins.Op)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.NativeEndian.AppendUint32(b, ins.K)
	}
	return b
}
