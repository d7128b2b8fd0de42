package embedded

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A port picked for etcd can be taken by another process before etcd binds
// it; StartEtcd then picks again instead of failing.
func TestStartEtcdPicksAgainWhenAPickedPortIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pick := pickAddr
	var handedOutTaken bool
	pickAddr = func(host string) (string, error) {
		if !handedOutTaken {
			handedOutTaken = true
			return taken.Addr().String(), nil
		}
		return pick(host)
	}
	defer func() { pickAddr = pick }()

	e, err := StartEtcd(context.Background(), EtcdOptions{Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatalf("StartEtcd: %v", err)
	}
	defer e.Close()
	if !handedOutTaken {
		t.Fatal("the taken port was never handed out")
	}
	if strings.HasSuffix(e.Endpoint, taken.Addr().String()) {
		t.Fatalf("etcd serves on the taken address %s", e.Endpoint)
	}
}

// A port the caller chose is not picked again: its being taken is an error
// that names the address.
func TestStartEtcdReportsATakenChosenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = StartEtcd(context.Background(), EtcdOptions{Dir: t.TempDir(), ClientAddr: taken.Addr().String(), PeerAddr: "127.0.0.1:0", Fast: true})
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("StartEtcd on a taken chosen port: %v", err)
	}
}

// Close may be called more than once on every daemon (a deferred Close
// after an explicit one, as etcd's embed.Etcd allows).
func TestEveryDaemonCanBeClosedTwice(t *testing.T) {
	ctx := context.Background()
	e, err := StartEtcd(ctx, EtcdOptions{Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close()
	n, err := StartNSQD(ctx, NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	waitServes(t, n.HTTPAddr)
	n.Close()
	n.Close()
	l, err := StartLookupd(nil)
	if err != nil {
		t.Fatal(err)
	}
	waitServes(t, l.HTTPAddr)
	l.Close()
	l.Close()
}

// waitServes polls an nsqd or nsqlookupd HTTP address until it answers
// /ping. Their Main starts their goroutines in the background, and an Exit
// before it has started them all races with it (nsqd's WaitGroup).
func waitServes(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/ping")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer /ping: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
