package seccomp_test

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/jobx/jobx/sandbox/internal/seccomp"
)

// seccompData is struct seccomp_data, what the kernel runs a filter on.
type seccompData struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

// bytes lays d out as the kernel does: nr, arch, instruction pointer,
// args, native byte order.
func (d seccompData) bytes() []byte {
	b := binary.NativeEndian.AppendUint32(nil, d.nr)
	b = binary.NativeEndian.AppendUint32(b, d.arch)
	b = binary.NativeEndian.AppendUint64(b, 0)
	for _, a := range d.args {
		b = binary.NativeEndian.AppendUint64(b, a)
	}
	return b
}

// run decodes f.Bytes() and runs the program on d as the kernel would,
// returning the action and the number of instructions executed. It
// knows the instructions go-seccomp-bpf emits and fails the test on any
// other.
func run(t testing.TB, f *seccomp.Filter, d seccompData) (action uint32, steps int) {
	t.Helper()
	b := f.Bytes()
	prog := make([]bpf.Instruction, f.Len())
	for i := range prog {
		raw := bpf.RawInstruction{
			Op: binary.NativeEndian.Uint16(b[8*i:]),
			Jt: b[8*i+2],
			Jf: b[8*i+3],
			K:  binary.NativeEndian.Uint32(b[8*i+4:]),
		}
		prog[i] = raw.Disassemble()
	}
	data := d.bytes()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		steps++
		switch ins := prog[pc].(type) {
		case bpf.LoadAbsolute:
			if ins.Size != 4 || int(ins.Off)+4 > len(data) {
				t.Fatalf("instruction %d: %v reads outside seccomp_data", pc, ins)
			}
			a = binary.NativeEndian.Uint32(data[ins.Off:])
		case bpf.Jump:
			pc += int(ins.Skip)
		case bpf.JumpIf:
			if holds(ins.Cond, a, ins.Val) {
				pc += int(ins.SkipTrue)
			} else {
				pc += int(ins.SkipFalse)
			}
		case bpf.RetConstant:
			return ins.Val, steps
		default:
			t.Fatalf("instruction %d: unexpected %v", pc, ins)
		}
	}
	t.Fatal("program ran off its end")
	return 0, 0
}

func holds(cond bpf.JumpTest, a, v uint32) bool {
	switch cond {
	case bpf.JumpEqual:
		return a == v
	case bpf.JumpNotEqual:
		return a != v
	case bpf.JumpGreaterThan:
		return a > v
	case bpf.JumpLessThan:
		return a < v
	case bpf.JumpGreaterOrEqual:
		return a >= v
	case bpf.JumpLessOrEqual:
		return a <= v
	case bpf.JumpBitsSet:
		return a&v != 0
	case bpf.JumpBitsNotSet:
		return a&v == 0
	}
	panic("unknown jump test")
}
