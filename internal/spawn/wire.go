package spawn

import "encoding/json"

// Request asks the agent to run one process.
type Request struct {
	Argv []string `json:"argv"`
	// Env is the child's whole environment, KEY=value; PATH in it is used
	// to find Argv[0] when it has no slash.
	Env []string `json:"env"`
	// Dir is the working directory; empty keeps the server's.
	Dir     string  `json:"cwd,omitempty"`
	Rlimits Rlimits `json:"rlimits"`
}

// ZygoteRequest asks the Python zygote to run one handler in a fork of
// itself.
type ZygoteRequest struct {
	HandlerPath string `json:"handler_path"`
	HandlerType string `json:"handler_type"`
	// Env is the child's whole environment.
	Env map[string]string `json:"env"`
	// Dir is the working directory; empty keeps the zygote's.
	Dir     string  `json:"cwd,omitempty"`
	Rlimits Rlimits `json:"rlimits"`
	// Reuse lets the run go to a child kept (parked) after a run of the
	// same handler under the same key, and lets this run's child be kept.
	Reuse string `json:"reuse,omitempty"`
	// Lane asks for the kept child's control socket: it comes with the
	// final reply (Reply.Lane), and the key's next run may be sent to the
	// child on it (Resume).
	Lane bool `json:"lane,omitempty"`
}

// StatusQuery asks the zygote, on a connection of its own and with no
// files, how the child Pid that it handed over as a lane ended. The answer
// is a final Reply, sent once the zygote has reaped the child.
type StatusQuery struct {
	Pid int `json:"status_of"`
}

// Rlimits are resource limits applied to a child; zero fields are left as
// inherited.
type Rlimits struct {
	AS    int64 `json:"as,omitempty"`    // address space, bytes
	CPU   int64 `json:"cpu,omitempty"`   // CPU time, seconds
	NProc int64 `json:"nproc,omitempty"` // processes of the user (not enforced for root)
	FSize int64 `json:"fsize,omitempty"` // largest file written, bytes
}

// Reply is one line from the server: first Pid (or Error), then ExitCode or
// Signal. The zygote's final line may add Parked, Idle and Lane.
type Reply struct {
	Pid      *int   `json:"pid,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   *int   `json:"signal,omitempty"`
	Error    string `json:"error,omitempty"`
	// Parked: the child exited 0 but was kept for the next run of its
	// reuse key.
	Parked bool `json:"parked,omitempty"`
	// Idle are the pids (in the sandbox) of the zygote's pre-forked
	// children waiting for an invocation.
	Idle []int `json:"idle,omitempty"`
	// Lane: the kept child's control socket comes with this line, as its
	// one file descriptor.
	Lane bool `json:"lane,omitempty"`
}

// String returns the reply as it goes on the wire, for error messages.
func (r Reply) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}
