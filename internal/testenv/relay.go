package testenv

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Relay is a TCP relay to one address that a test can cut (every
// connection closed, new ones refused) and heal: a network partition
// between the relay's clients and the address, e.g. a watch cut off from
// etcd while its history is compacted.
type Relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex // guards cutOff and conns
	cutOff bool
	conns  []net.Conn
}

// NewRelay starts a relay to target (host:port) on a loopback port; it
// stops when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); r.Cut() })
	go r.serve()
	return r
}

// Addr is the relay's host:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

func (r *Relay) serve() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.cutOff {
			r.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			r.mu.Unlock()
			in.Close()
			continue
		}
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// Cut closes every relayed connection and refuses new ones until Heal.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutOff = true
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// Heal lets connections through again.
func (r *Relay) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutOff = false
}

// EtcdThrough returns a relay to the etcd at endpoint and a client that
// reaches etcd only through it, redialling within a second of a Heal; the
// client is closed when the test ends.
func EtcdThrough(t testing.TB, endpoint string) (*Relay, *clientv3.Client) {
	t.Helper()
	r := NewRelay(t, strings.TrimPrefix(endpoint, "http://"))
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + r.Addr()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("etcd client through a relay: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return r, cli
}
