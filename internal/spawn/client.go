// Package spawn is the client side of the fork-server protocol that jobx's
// sandbox servers speak (the agent, sandbox/agent, and the Python zygote,
// processors/python): one JSON request line with the child's stdin, stdout
// and stderr attached as file descriptors, a {"pid": N} reply once the child
// runs, and a final {"exit_code": c} or {"signal": s} line. Hanging up
// before the child ends makes the server kill the child's process group.
package spawn

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerGone means the agent or zygote went away mid-request (usually
// because its sandbox died).
var ErrServerGone = errors.New("sandbox server went away")

type reply struct {
	Pid      *int   `json:"pid"`
	ExitCode *int   `json:"exit_code"`
	Signal   *int   `json:"signal"`
	Error    string `json:"error"`
	// Parked and Idle come from a Python zygote: the child was kept for the
	// next run of its reuse key, and the zygote's pre-forked children
	// waiting for an invocation (pids in the box).
	Parked bool  `json:"parked"`
	Idle   []int `json:"idle"`
}

// Child is a process started by an agent or zygote in a sandbox. Closing
// its connection kills its process group (inside the sandbox's PID
// namespace, where the runner cannot signal it directly).
type Child struct {
	// Pid is the child's pid in the sandbox's PID namespace.
	Pid  int
	conn *net.UnixConn
	r    *bufio.Reader

	closeOnce sync.Once
	killed    atomic.Bool
}

// Start sends msg with the three files to the server at sock and returns
// the started child. ctx bounds the hand-over. The caller must Close the
// child once Wait has returned.
func Start(ctx context.Context, sock string, msg any, stdin, stdout, stderr *os.File) (*Child, error) {
	line, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServerGone, err)
	}
	uc := conn.(*net.UnixConn)
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > 10*time.Second {
		deadline = time.Now().Add(10 * time.Second)
	}
	uc.SetDeadline(deadline)
	oob := syscall.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	_, _, err = uc.WriteMsgUnix(append(line, '\n'), oob, nil)
	runtime.KeepAlive(stdin)
	runtime.KeepAlive(stdout)
	runtime.KeepAlive(stderr)
	r := bufio.NewReader(uc)
	var rep reply
	if err == nil {
		var b []byte
		if b, err = r.ReadBytes('\n'); err == nil {
			err = json.Unmarshal(b, &rep)
		}
	}
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("%w: %v", ErrServerGone, err)
	}
	if rep.Error != "" || rep.Pid == nil {
		uc.Close()
		if rep.Error == "" {
			rep.Error = "no pid in reply"
		}
		return nil, errors.New(rep.Error)
	}
	uc.SetDeadline(time.Time{})
	return &Child{Pid: *rep.Pid, conn: uc, r: r}, nil
}

// Status is how a child ended, and which of the zygote's children survive
// it: the child itself when Parked, and the Idle pre-forked ones (pids in
// the sandbox).
type Status struct {
	Code   int
	Signal int
	Parked bool
	Idle   []int
}

// Wait blocks until the child ends. An error wrapping ErrServerGone means
// the server died first.
func (c *Child) Wait() (Status, error) {
	b, err := c.r.ReadBytes('\n')
	killed := c.killed.Load()
	c.Kill()
	if err != nil && killed {
		// The zygote answers a hang-up by killing the group and closing.
		return Status{Code: 128 + int(syscall.SIGKILL), Signal: int(syscall.SIGKILL)}, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("%w: %v", ErrServerGone, err)
	}
	var rep reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return Status{}, fmt.Errorf("bad reply %q: %w", b, err)
	}
	switch {
	case rep.Signal != nil:
		return Status{Code: 128 + *rep.Signal, Signal: *rep.Signal, Idle: rep.Idle}, nil
	case rep.ExitCode != nil:
		return Status{Code: *rep.ExitCode, Parked: rep.Parked && *rep.ExitCode == 0, Idle: rep.Idle}, nil
	}
	return Status{}, fmt.Errorf("bad reply %q", b)
}

// Kill hangs up, which makes the server kill the child's process group.
// It is safe to call concurrently with Wait and more than once.
func (c *Child) Kill() {
	c.closeOnce.Do(func() {
		c.killed.Store(true)
		c.conn.CloseWrite()
	})
}

// Close releases the connection.
func (c *Child) Close() { c.conn.Close() }
