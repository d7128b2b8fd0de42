package seccomp

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"syscall"

	libseccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
)

// maxErrno is the largest errno a SECCOMP_RET_ERRNO action may return.
const maxErrno = 4095

// defaultPlaceholder stands for the profile's default action while
// go-seccomp-bpf assembles the policy: the library only accepts a bare
// action as the default, and a bare ActionErrno always means EPERM. No
// rule maps to ActionTrace (action refuses it), so every return of it in
// the assembled program is the default one and is then replaced.
const defaultPlaceholder = libseccomp.ActionTrace

// nativeArches names, per GOARCH, the OCI architecture of the programs
// go-seccomp-bpf builds there. It has syscall tables for these only.
var nativeArches = map[string]specs.Arch{
	"amd64": specs.ArchX86_64,
	"386":   specs.ArchX86,
	"arm64": specs.ArchAARCH64,
	"arm":   specs.ArchARM,
}

// Compile compiles profile into a program for the running architecture.
//
// Only that architecture's syscalls are filtered: a syscall made through
// another ABI (i386 on amd64, arm on arm64) gets the default action
// whatever the profile lists in Architectures, and on amd64 an x32 syscall
// gets ENOSYS. Syscall names the architecture does not have are skipped,
// as libseccomp skips them. Rules for one syscall must share one action
// (one errno); argument conditions support every operator except
// SCMP_CMP_MASKED_EQ with a non-zero result. Rules commute under that
// constraint, so the program has one group of compares per action,
// allowed names first, most frequently made syscalls first.
func Compile(profile *specs.LinuxSeccomp) (*Filter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	if len(profile.Architectures) > 0 && !slices.Contains(profile.Architectures, nativeArches[runtime.GOARCH]) {
		return nil, fmt.Errorf("seccomp: profile architectures %v do not include %s", profile.Architectures, info.Name)
	}
	if len(profile.Flags) > 0 {
		return nil, fmt.Errorf("seccomp: filter flags %v are not supported", profile.Flags)
	}
	if profile.ListenerPath != "" {
		return nil, fmt.Errorf("seccomp: a listener (%s) is not supported", profile.ListenerPath)
	}
	def, err := action(profile.DefaultAction, profile.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp: default action: %w", err)
	}
	groups, err := groupRules(profile.Syscalls, info)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	policy := libseccomp.Policy{DefaultAction: defaultPlaceholder, Syscalls: groups}
	insts, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	for i, ins := range insts {
		if ret, ok := ins.(bpf.RetConstant); ok && ret.Val == uint32(defaultPlaceholder) {
			insts[i] = bpf.RetConstant{Val: uint32(def)}
		}
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	if len(raw) > MaxInstructions {
		return nil, fmt.Errorf("seccomp: program has %d instructions, more than the kernel's %d", len(raw), MaxInstructions)
	}
	return &Filter{raw: raw}, nil
}

// group collects the rules of one action: names allowed whatever their
// arguments, and names allowed only under conditions. go-seccomp-bpf
// refuses a group that names a syscall twice unconditionally or both
// with and without conditions; with one action, the unconditional rule
// subsumes the conditional ones, so those are dropped.
type group struct {
	action libseccomp.Action
	names  []string
	always map[string]bool
	conds  []libseccomp.NameWithConditions
}

func (g *group) add(name string, conds libseccomp.ArgumentConditions) {
	switch {
	case g.always[name]:
	case len(conds) == 0:
		g.always[name] = true
		g.names = append(g.names, name)
		g.conds = slices.DeleteFunc(g.conds, func(c libseccomp.NameWithConditions) bool { return c.Name == name })
	default:
		// Several entries for one name are ORed by the library.
		g.conds = append(g.conds, libseccomp.NameWithConditions{Name: name, Conditions: conds})
	}
}

// groupRules turns the profile's rules into one SyscallGroup per action,
// in the order the actions first appear, names ordered hottest first.
func groupRules(rules []specs.LinuxSyscall, info *arch.Info) ([]libseccomp.SyscallGroup, error) {
	var groups []*group
	byAction := map[libseccomp.Action]*group{}
	actionOf := map[string]libseccomp.Action{}
	for i, r := range rules {
		act, err := action(r.Action, r.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, strings.Join(r.Names, " "), err)
		}
		conds, err := conditions(r.Args)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, strings.Join(r.Names, " "), err)
		}
		for _, name := range r.Names {
			if _, ok := info.SyscallNames[name]; !ok {
				continue
			}
			if prev, ok := actionOf[name]; ok && prev != act {
				return nil, fmt.Errorf("rule %d: %s has two actions, %#x and %#x", i, name, uint32(prev), uint32(act))
			}
			actionOf[name] = act
			g := byAction[act]
			if g == nil {
				g = &group{action: act, always: map[string]bool{}}
				byAction[act] = g
				groups = append(groups, g)
			}
			g.add(name, conds)
		}
	}
	// Allowed syscalls are the common case: their group goes first.
	slices.SortStableFunc(groups, func(a, b *group) int {
		return boolRank(a.action != libseccomp.ActionAllow) - boolRank(b.action != libseccomp.ActionAllow)
	})
	out := make([]libseccomp.SyscallGroup, 0, len(groups))
	for _, g := range groups {
		slices.SortStableFunc(g.names, byHeat)
		slices.SortStableFunc(g.conds, func(a, b libseccomp.NameWithConditions) int { return byHeat(a.Name, b.Name) })
		out = append(out, libseccomp.SyscallGroup{Action: g.action, Names: g.names, NamesWithCondtions: g.conds})
	}
	return out, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// action maps an OCI action to go-seccomp-bpf's. errnoRet is the errno of
// ActErrno, EPERM when nil.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return libseccomp.ActionAllow, nil
	case specs.ActErrno:
		errno := uint(syscall.EPERM)
		if errnoRet != nil {
			errno = *errnoRet
		}
		// The library turns a bare ActionErrno into EPERM, so errno 0
		// (fake success) cannot be expressed.
		if errno == 0 || errno > maxErrno {
			return 0, fmt.Errorf("errno %d out of range 1..%d", errno, maxErrno)
		}
		return libseccomp.ActionErrno | libseccomp.Action(errno), nil
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActionTrap, nil
	case specs.ActLog:
		return libseccomp.ActionLog, nil
	}
	return 0, fmt.Errorf("unsupported action %s", a)
}

// conditions maps a rule's argument comparisons, all of which must hold,
// to go-seccomp-bpf's. Both compare the whole 64-bit argument, unsigned.
func conditions(args []specs.LinuxSeccompArg) (libseccomp.ArgumentConditions, error) {
	var out libseccomp.ArgumentConditions
	for _, a := range args {
		if a.Index > 5 {
			return nil, fmt.Errorf("argument index %d out of range 0..5", a.Index)
		}
		var op libseccomp.Operation
		switch a.Op {
		case specs.OpEqualTo:
			op = libseccomp.Equal
		case specs.OpNotEqual:
			op = libseccomp.NotEqual
		case specs.OpLessThan:
			op = libseccomp.LessThan
		case specs.OpLessEqual:
			op = libseccomp.LessOrEqual
		case specs.OpGreaterThan:
			op = libseccomp.GreaterThan
		case specs.OpGreaterEqual:
			op = libseccomp.GreaterOrEqual
		case specs.OpMaskedEqual:
			// arg&Value == ValueTwo. With ValueTwo 0 that is "none of
			// Value's bits set", the library's BitsNotSet; its BitsSet
			// ("any bit set") matches no other case.
			if a.ValueTwo != 0 {
				return nil, fmt.Errorf("%s with a non-zero result %#x is not supported", a.Op, a.ValueTwo)
			}
			op = libseccomp.BitsNotSet
		default:
			return nil, fmt.Errorf("unsupported operator %s", a.Op)
		}
		out = append(out, libseccomp.Condition{Argument: uint32(a.Index), Operation: op, Value: a.Value})
	}
	return out, nil
}
