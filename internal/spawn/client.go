package spawn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerGone means the agent or zygote went away mid-request (usually
// because its sandbox died), or answered with a line that is not JSON.
var ErrServerGone = errors.New("sandbox server went away")

// handOver bounds Start, and Resume when its context has no deadline.
const handOver = 10 * time.Second

// Child is a process started by an agent or zygote in a sandbox. Closing
// its connection kills its process group (inside the sandbox's PID
// namespace, where the runner cannot signal it directly). Kill may be
// called concurrently with Wait; the caller must Close the child once Wait
// has returned.
type Child struct {
	// Pid is the child's pid in the sandbox's PID namespace.
	Pid  int
	conn *net.UnixConn
	r    *replyReader

	closeOnce sync.Once // ends the exchange: a hang-up, or Wait's reply
	killed    atomic.Bool
}

// Start sends req with the three files to the server at sock and returns
// the started child. The hand-over ends within 10 s and when ctx ends; the
// run itself is bounded by Kill. An error wrapping ctx.Err() means ctx
// ended first; one wrapping ErrServerGone means the server could not be
// reached, did not answer in time or went away; an Error reply comes back
// as an error of its text.
func Start(ctx context.Context, sock string, req any, stdin, stdout, stderr *os.File) (*Child, error) {
	deadline := time.Now().Add(handOver)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fail(err)
	}
	uc := conn.(*net.UnixConn)
	uc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Now()) })
	r := &replyReader{conn: uc}
	err = writeRequest(uc, req, stdin, stdout, stderr)
	var rep Reply
	if err == nil {
		rep, err = r.read()
	}
	if !stop() && err == nil {
		// ctx ended as the reply came: the deadline may be past already.
		err = errors.New("hand-over cut short")
	}
	if err != nil {
		r.closeFDs()
		uc.Close()
		return nil, fail(err)
	}
	if rep.Error != "" || rep.Pid == nil {
		r.closeFDs()
		uc.Close()
		if rep.Error == "" {
			rep.Error = "no pid in reply"
		}
		return nil, errors.New(rep.Error)
	}
	uc.SetDeadline(time.Time{})
	return &Child{Pid: *rep.Pid, conn: uc, r: r}, nil
}

// Resume sends req with the three files to a child that already runs and
// listens on conn: a kept child whose control socket the zygote handed over
// (a lane, Reply.Lane). There is no pid reply; the child's final reply
// comes on conn, which the returned Child then owns. ctx bounds the write
// (10 s when it has no deadline). On error, conn stays the caller's.
func Resume(ctx context.Context, conn *net.UnixConn, pid int, req any, stdin, stdout, stderr *os.File) (*Child, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(handOver)
	}
	conn.SetWriteDeadline(deadline)
	if err := writeRequest(conn, req, stdin, stdout, stderr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	conn.SetWriteDeadline(time.Time{})
	return &Child{Pid: pid, conn: conn, r: &replyReader{conn: conn}}, nil
}

// Query sends req, with no files, to the server at sock on a connection of
// its own and returns its one reply line. ctx bounds it all.
func Query(ctx context.Context, sock string, req any) (Reply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if deadline, ok := ctx.Deadline(); ok {
		uc.SetDeadline(deadline)
	}
	r := &replyReader{conn: uc}
	defer r.closeFDs()
	err = writeRequest(uc, req)
	var rep Reply
	if err == nil {
		rep, err = r.read()
	}
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	return rep, nil
}

// Status is how a child ended, and which of the zygote's children survive
// it: the child itself when Parked, and the Idle pre-forked ones (pids in
// the sandbox).
type Status struct {
	// Code is the exit status, or 128 plus Signal.
	Code   int
	Signal int
	Parked bool
	Idle   []int
	// Lane reports that the parked child's control socket came with the
	// reply: the one descriptor TakeFDs returns.
	Lane bool
}

// Wait blocks until the child ends. An error wrapping ErrServerGone means
// the server died first (and Wait has hung up); after a Kill, a server that
// just closes the connection (the zygote does) counts as the child killed
// by SIGKILL.
func (c *Child) Wait() (Status, error) {
	rep, err := c.r.read()
	if err != nil {
		killed := c.killed.Load()
		c.Kill()
		if killed {
			return Status{Code: 128 + int(syscall.SIGKILL), Signal: int(syscall.SIGKILL)}, nil
		}
		return Status{}, fmt.Errorf("%w: %w", ErrServerGone, err)
	}
	// The exchange is over; a later Kill must not hang up a lane.
	c.closeOnce.Do(func() {})
	switch {
	case rep.Signal != nil:
		return Status{Code: 128 + *rep.Signal, Signal: *rep.Signal, Idle: rep.Idle, Lane: rep.Lane}, nil
	case rep.ExitCode != nil:
		return Status{Code: *rep.ExitCode, Parked: rep.Parked && *rep.ExitCode == 0, Idle: rep.Idle, Lane: rep.Lane}, nil
	}
	return Status{}, fmt.Errorf("reply without exit_code or signal: %s", rep)
}

// Kill hangs up, which makes the server kill the child's process group.
// It is safe to call concurrently with Wait and more than once, and does
// nothing once Wait has read the final reply.
func (c *Child) Kill() {
	c.closeOnce.Do(func() {
		c.killed.Store(true)
		c.conn.CloseWrite()
	})
}

// TakeFDs returns the file descriptors that came with the replies so far
// (a lane's socket); the caller owns them.
func (c *Child) TakeFDs() []int { return c.r.takeFDs() }

// Close releases the connection and the descriptors not taken.
func (c *Child) Close() {
	c.r.closeFDs()
	c.conn.Close()
}

// writeRequest sends req as one line, with files attached.
func writeRequest(conn *net.UnixConn, req any, files ...*os.File) error {
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			// Fd puts the file in blocking mode, which the child needs.
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(append(line, '\n'), oob, nil)
	runtime.KeepAlive(files)
	return err
}

// replyReader reads reply lines from a unix socket, keeping the file
// descriptors that come with them.
type replyReader struct {
	conn *net.UnixConn
	buf  []byte
	fds  []int
}

// read returns the next reply; io.EOF when the socket closed before a
// whole line came.
func (r *replyReader) read() (Reply, error) {
	line, err := r.readLine()
	if err != nil {
		return Reply{}, err
	}
	var rep Reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return Reply{}, fmt.Errorf("bad reply %q: %w", line, err)
	}
	return rep, nil
}

func (r *replyReader) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			line := r.buf[: i+1 : i+1]
			r.buf = r.buf[i+1:]
			return line, nil
		}
		var b [512]byte
		oob := make([]byte, syscall.CmsgSpace(4*4))
		n, oobn, _, _, err := r.conn.ReadMsgUnix(b[:], oob)
		if oobn > 0 {
			if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for _, m := range msgs {
					if fds, rerr := syscall.ParseUnixRights(&m); rerr == nil {
						for _, fd := range fds {
							syscall.CloseOnExec(fd)
						}
						r.fds = append(r.fds, fds...)
					}
				}
			}
		}
		r.buf = append(r.buf, b[:n]...)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, io.EOF
		}
	}
}

func (r *replyReader) takeFDs() []int {
	fds := r.fds
	r.fds = nil
	return fds
}

func (r *replyReader) closeFDs() {
	for _, fd := range r.takeFDs() {
		syscall.Close(fd)
	}
}
