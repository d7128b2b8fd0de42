package containerd

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

// errServerGone means the agent or zygote went away mid-request (usually
// because its container died).
var errServerGone = errors.New("sandbox server went away")

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

// child is a process started by an agent or zygote in a container. Closing
// its connection kills its process group (inside the container's PID
// namespace, where the runner cannot signal it directly).
type child struct {
	pid  int // in the container's PID namespace
	conn *net.UnixConn
	r    *bufio.Reader

	closeOnce sync.Once
	killed    atomic.Bool
}

// spawn sends msg with the three files to the server at sock and returns
// the started child. ctx bounds the hand-over.
func spawn(ctx context.Context, sock string, msg any, stdin, stdout, stderr *os.File) (*child, error) {
	line, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errServerGone, err)
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
		return nil, fmt.Errorf("%w: %v", errServerGone, err)
	}
	if rep.Error != "" || rep.Pid == nil {
		uc.Close()
		if rep.Error == "" {
			rep.Error = "no pid in reply"
		}
		return nil, errors.New(rep.Error)
	}
	uc.SetDeadline(time.Time{})
	return &child{pid: *rep.Pid, conn: uc, r: r}, nil
}

// status is how a child ended, and which of the zygote's children survive
// it: the child itself when parked, and the idle pre-forked ones.
type status struct {
	code   int
	signal int
	parked bool
	idle   []int
}

// wait blocks until the child ends. An error wrapping errServerGone means
// the server died first.
func (c *child) wait() (status, error) {
	b, err := c.r.ReadBytes('\n')
	killed := c.killed.Load()
	c.kill()
	if err != nil && killed {
		// The zygote answers a hang-up by killing the group and closing.
		return status{code: 128 + int(syscall.SIGKILL), signal: int(syscall.SIGKILL)}, nil
	}
	if err != nil {
		return status{}, fmt.Errorf("%w: %v", errServerGone, err)
	}
	var rep reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return status{}, fmt.Errorf("bad reply %q: %w", b, err)
	}
	switch {
	case rep.Signal != nil:
		return status{code: 128 + *rep.Signal, signal: *rep.Signal, idle: rep.Idle}, nil
	case rep.ExitCode != nil:
		return status{code: *rep.ExitCode, parked: rep.Parked && *rep.ExitCode == 0, idle: rep.Idle}, nil
	}
	return status{}, fmt.Errorf("bad reply %q", b)
}

// kill hangs up, which makes the server kill the child's process group.
// It is safe to call concurrently with wait and more than once.
func (c *child) kill() {
	c.closeOnce.Do(func() {
		c.killed.Store(true)
		c.conn.CloseWrite()
	})
}

func (c *child) close() { c.conn.Close() }
