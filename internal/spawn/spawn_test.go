package spawn_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/spawn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a tiny agent: it runs each request's argv in a session of its
// own and kills the session when the client hangs up first.
type server struct {
	sock    string
	wg      sync.WaitGroup
	hangUps atomic.Int32
}

func startServer(t testing.TB) *server {
	t.Helper()
	s := &server{sock: filepath.Join(t.TempDir(), "spawn.sock")}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn)
			}()
		}
	}()
	return s
}

func (s *server) serve(conn *net.UnixConn) {
	defer conn.Close()
	var req spawn.Request
	files, err := spawn.ReadRequest(conn, &req)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if errors.Is(err, spawn.ErrBadRequest) {
		spawn.WriteReply(conn, spawn.Reply{Error: err.Error()})
	}
	if err != nil {
		return
	}
	if len(files) != 3 || len(req.Argv) == 0 {
		spawn.WriteReply(conn, spawn.Reply{Error: "want argv and 3 files"})
		return
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		spawn.WriteReply(conn, spawn.Reply{Error: err.Error()})
		return
	}
	pid := cmd.Process.Pid
	spawn.WriteReply(conn, spawn.Reply{Pid: &pid})
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waited)
	}()
	hungUp := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		io.Copy(io.Discard, conn) // ends at the hang-up, or at our Close
		close(hungUp)
	}()
	select {
	case <-waited:
	case <-hungUp:
		s.hangUps.Add(1)
		syscall.Kill(-pid, syscall.SIGKILL)
		<-waited
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		sig := int(ws.Signal())
		spawn.WriteReply(conn, spawn.Reply{Signal: &sig})
		return
	}
	code := ws.ExitStatus()
	spawn.WriteReply(conn, spawn.Reply{ExitCode: &code})
}

// stdio are the files of one child: the test writes In and reads Out.
type stdio struct {
	In, Out   *os.File // the test's ends
	inR, outW *os.File // the child's
	stderr    *os.File // /dev/null
}

func newStdio(t testing.TB) *stdio {
	t.Helper()
	var s stdio
	var err error
	if s.inR, s.In, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	if s.Out, s.outW, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	if s.stderr, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range []*os.File{s.In, s.Out, s.inR, s.outW, s.stderr} {
			f.Close()
		}
	})
	return &s
}

// start starts req on the server at sock and closes the child's ends of the pipes.
func (s *stdio) start(t testing.TB, sock string, req any) (*spawn.Child, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := spawn.Start(ctx, sock, req, s.inR, s.outW, s.stderr)
	s.inR.Close()
	s.outW.Close()
	if c != nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

func TestChildGetsItsFilesAndItsExitCodeComesBack(t *testing.T) {
	srv := startServer(t)
	p := newStdio(t)
	c, err := p.start(t, srv.sock, spawn.Request{Argv: []string{"sh", "-c", `read x; echo "got $x"; exit 3`}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid <= 0 {
		t.Fatalf("pid %d", c.Pid)
	}
	p.In.WriteString("hello\n")
	line, err := bufio.NewReader(p.Out).ReadString('\n')
	if err != nil || line != "got hello\n" {
		t.Fatalf("child wrote %q, %v", line, err)
	}
	st, err := c.Wait()
	if err != nil || st.Code != 3 || st.Signal != 0 {
		t.Fatalf("Wait = %+v, %v; want code 3", st, err)
	}
}

func TestChildKilledBySignalReportsIt(t *testing.T) {
	srv := startServer(t)
	c, err := newStdio(t).start(t, srv.sock, spawn.Request{Argv: []string{"sh", "-c", "kill -TERM $$"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil || st.Signal != int(syscall.SIGTERM) || st.Code != 128+int(syscall.SIGTERM) {
		t.Fatalf("Wait = %+v, %v; want SIGTERM", st, err)
	}
}

func TestKillHangsUpAndTheServerKillsTheChildsGroup(t *testing.T) {
	srv := startServer(t)
	p := newStdio(t)
	c, err := p.start(t, srv.sock, spawn.Request{Argv: []string{"sh", "-c", "sleep 60 & echo $!; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(p.Out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	c.Kill()
	c.Kill() // a second hang-up does nothing
	st, err := c.Wait()
	if err != nil || st.Signal != int(syscall.SIGKILL) {
		t.Fatalf("Wait = %+v, %v; want SIGKILL", st, err)
	}
	if n := srv.hangUps.Load(); n != 1 {
		t.Fatalf("server saw %d hang-ups, want 1", n)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(grandchild); {
		if time.Now().After(deadline) {
			t.Fatalf("the child's child %d outlived the hang-up", grandchild)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i:]), ") Z")
}

func TestRefusalsAndAbsentServers(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name, sock string
		req        any
		gone       bool
		text       string
	}{
		{name: "an error reply comes back as its text", sock: srv.sock, req: spawn.Request{}, text: "want argv and 3 files"},
		{name: "a request that does not decode is a bad request", sock: srv.sock, req: map[string]any{"argv": 1}, text: "bad request: json:"},
		{name: "no server at the socket is ErrServerGone", sock: srv.sock + ".absent", req: spawn.Request{Argv: []string{"true"}}, gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newStdio(t).start(t, tc.sock, tc.req)
			if err == nil || errors.Is(err, spawn.ErrServerGone) != tc.gone || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Start: %v", err)
			}
		})
	}
}

// TestResumeOnALane plays a kept child (the zygote's lane): a run sent on
// its own socket, a final reply carrying a descriptor, and then a child
// that goes away without a status.
func TestResumeOnALane(t *testing.T) {
	client, child := socketPair(t)
	p := newStdio(t)
	done := make(chan error, 1)
	go func() {
		var req spawn.ZygoteRequest
		files, err := spawn.ReadRequest(child, &req)
		for _, f := range files {
			f.Close()
		}
		if err == nil && (len(files) != 3 || req.HandlerPath != "h.py" || !req.Lane) {
			err = errors.New("unexpected request")
		}
		code := 0
		line, _ := json.Marshal(spawn.Reply{ExitCode: &code, Parked: true, Lane: true})
		if err == nil {
			_, _, err = child.WriteMsgUnix(append(line, '\n'), syscall.UnixRights(int(p.stderr.Fd())), nil)
		}
		child.Close()
		done <- err
	}()
	ctx := context.Background()
	req := spawn.ZygoteRequest{HandlerPath: "h.py", Reuse: "r", Lane: true}
	c, err := spawn.Resume(ctx, client, 42, req, p.inR, p.outW, p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil || !st.Parked || !st.Lane || c.Pid != 42 {
		t.Fatalf("Wait = %+v, %v; want parked with a lane", st, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fds := c.TakeFDs()
	if len(fds) != 1 {
		t.Fatalf("got %d descriptors with the reply, want 1", len(fds))
	}
	syscall.Close(fds[0])

	c, err = spawn.Resume(ctx, client, 42, req, p.inR, p.outW, p.stderr)
	if err == nil {
		_, err = c.Wait()
	}
	if !errors.Is(err, spawn.ErrServerGone) {
		t.Fatalf("a run on a closed lane: %v; want ErrServerGone", err)
	}
}

func socketPair(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}
