package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/embedded"
)

// Proc is a real etcd or nsqd in a child process of the test, so that a
// test can kill it with SIGKILL, stop it or restart it on the same
// addresses and data directory. The child is the test binary itself: a
// package using Proc calls RunDaemonIfAsked first thing in its TestMain.
type Proc struct {
	t    testing.TB
	kind string
	dir  string
	// Addr is nsqd's TCP address or etcd's client endpoint (http://...);
	// HTTPAddr is nsqd's HTTP address.
	Addr, HTTPAddr string
	ports          []string
	cmd            *exec.Cmd
	exited         chan struct{}
}

const daemonEnv = "JOBX_TESTENV_DAEMON"

// EtcdProc starts etcd (fast ticks, no fsync) in a child process.
func EtcdProc(t testing.TB) *Proc {
	p := &Proc{t: t, kind: "etcd", dir: t.TempDir()}
	p.firstStart(func() { p.Addr = "http://" + p.ports[0] })
	t.Cleanup(p.Kill)
	return p
}

// NSQDProc starts nsqd in a child process; with diskOnly every message is
// written to its data directory (no in-memory queue).
func NSQDProc(t testing.TB, diskOnly bool) *Proc {
	kind := "nsqd"
	if diskOnly {
		kind = "nsqd-disk"
	}
	p := &Proc{t: t, kind: kind, dir: t.TempDir()}
	p.firstStart(func() { p.Addr, p.HTTPAddr = p.ports[0], p.ports[1] })
	t.Cleanup(p.Kill)
	return p
}

// firstStart starts the daemon on two free ports. A port is only free when
// FreeAddrs picks it; when another process takes one before the daemon
// binds it, firstStart picks new ports and tries again, a few times.
// Restarts keep the ports.
func (p *Proc) firstStart(setAddrs func()) {
	p.t.Helper()
	for attempt := 1; ; attempt++ {
		p.ports = FreeAddrs(p.t, 2)
		setAddrs()
		err := p.start()
		if err == nil {
			return
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			p.t.Fatal(err)
		}
	}
}

// Start (re)starts the daemon and waits until it serves.
func (p *Proc) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Proc) start() error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+strings.Join(append([]string{p.kind, p.dir}, p.ports...), ","))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.kind, err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("%s did not start: %q", p.kind, line)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("%s not ready within 30s", p.kind)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(cmd, p.exited)
	return nil
}

// Pid is the running daemon's process id (0 when it is not running).
func (p *Proc) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (the daemon shuts down cleanly: nsqd writes the
// messages it holds to disk) and waits for the process to end.
func (p *Proc) Stop() { p.signal(syscall.SIGTERM) }

func (p *Proc) signal(sig os.Signal) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	<-p.exited
	p.cmd = nil
}

// FreeAddrs returns n loopback addresses whose ports were free a moment ago.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// RunDaemonIfAsked runs, when this process is a Proc's child, the daemon it
// was started for until SIGTERM or SIGKILL, and exits; otherwise it
// returns at once. Call it first in TestMain.
func RunDaemonIfAsked() {
	spec := os.Getenv(daemonEnv)
	if spec == "" {
		return
	}
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		fmt.Println("bad " + daemonEnv + ": " + spec)
		os.Exit(2)
	}
	kind, dir, a, b := f[0], f[1], f[2], f[3]
	ctx := context.Background()
	var stop func()
	switch kind {
	case "etcd":
		e, err := embedded.StartEtcd(ctx, embedded.EtcdOptions{Dir: dir, ClientAddr: a, PeerAddr: b, Fast: true})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		stop = e.Close
	case "nsqd", "nsqd-disk":
		n, err := embedded.StartNSQD(ctx, embedded.NSQDOptions{Dir: dir, TCPAddr: a, HTTPAddr: b, DiskOnly: kind == "nsqd-disk"})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		stop = n.Close
	default:
		fmt.Println("unknown daemon " + kind)
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("ready")
	<-sig
	stop()
	os.Exit(0)
}
