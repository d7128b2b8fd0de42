// Package embedded starts an in-process etcd server and nsqd, for
// `jobx up` and for tests.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nsqio/nsq/nsqd"
	"github.com/nsqio/nsq/nsqlookupd"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdOptions configure an embedded etcd server.
type EtcdOptions struct {
	Dir        string // data directory; required
	ClientAddr string // host:port for clients; "127.0.0.1:0" picks a port
	PeerAddr   string // host:port for peers; "127.0.0.1:0" picks a port
	Fast       bool   // fast ticks and no fsync: tests only
	// QuotaBackendBytes is etcd's --quota-backend-bytes: at this database
	// size etcd raises NOSPACE and refuses writes. 0: etcd's default, 2 GiB.
	QuotaBackendBytes int64
}

// Etcd is a running embedded etcd.
type Etcd struct {
	e        *embed.Etcd
	once     sync.Once // Close's
	Endpoint string    // http://host:port
}

// StartEtcd starts etcd and waits until it serves.
//
// A port picked for "host:0" is only free when it is picked: etcd binds it
// a moment later, and another process may take it in between. When that
// happens StartEtcd picks new ports and tries again, a few times.
func StartEtcd(ctx context.Context, o EtcdOptions) (*Etcd, error) {
	picks := pickedPort(o.ClientAddr, "127.0.0.1:2379") || pickedPort(o.PeerAddr, "127.0.0.1:0")
	for attempt := 1; ; attempt++ {
		e, err := startEtcd(ctx, o)
		if err == nil || !picks || attempt == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return e, err
		}
	}
}

func startEtcd(ctx context.Context, o EtcdOptions) (_ *Etcd, err error) {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(o.Dir, "etcd")
	cfg.Name = "jobx"
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	// etcd's own logs are dropped: its errors surface through StartEtcd and
	// through the clients.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, err := listenURL(o.ClientAddr, "127.0.0.1:2379")
	if err != nil {
		return nil, fmt.Errorf("etcd client address: %w", err)
	}
	peer, err := listenURL(o.PeerAddr, "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("etcd peer address: %w", err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = o.QuotaBackendBytes
	if o.Fast {
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.UnsafeNoFsync = true
	} else {
		cfg.TickMs, cfg.ElectionMs = 50, 500
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", cfg.Dir, err)
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("etcd did not become ready within 30s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &Etcd{e: e, Endpoint: "http://" + e.Clients[0].Addr().String()}, nil
}

// Close stops etcd. It is idempotent.
func (e *Etcd) Close() { e.once.Do(e.e.Close) }

// pickedPort says whether addr (or def, when addr is empty) asks for a
// port to be picked.
func pickedPort(addr, def string) bool {
	if addr == "" {
		addr = def
	}
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// listenURL turns host:port into a URL, picking a free port for port 0
// (etcd needs a concrete port to advertise).
func listenURL(addr, def string) (*url.URL, error) {
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if port == "0" {
		if addr, err = pickAddr(host); err != nil {
			return nil, err
		}
	}
	return url.Parse("http://" + addr)
}

// pickAddr returns host with a port that is free now; a variable so that
// a test can hand out a taken one.
var pickAddr = func(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// NSQDOptions configure an in-process nsqd.
type NSQDOptions struct {
	Dir      string // data directory; required
	TCPAddr  string // "127.0.0.1:0" picks a port
	HTTPAddr string
	MemQueue int64 // messages kept in memory per topic/channel before spilling to disk
	DiskOnly bool  // keep no message in memory: every message is written to disk
	// TLSCert and TLSKey (PEM files), when set, make nsqd require TLS.
	TLSCert, TLSKey string
	// Lookupds are nsqlookupd TCP addresses nsqd registers with, under
	// the host of TCPAddr.
	Lookupds []string
	Log      *slog.Logger
}

// NSQD is a running in-process nsqd.
type NSQD struct {
	n        *nsqd.NSQD
	once     sync.Once // Close's
	TCPAddr  string
	HTTPAddr string
}

type nsqLogger struct{ log *slog.Logger }

func (l nsqLogger) Output(_ int, s string) error {
	l.log.Debug(s)
	return nil
}

// StartNSQD starts nsqd and waits until it accepts connections.
func StartNSQD(ctx context.Context, o NSQDOptions) (*NSQD, error) {
	opts := nsqd.NewOptions()
	opts.DataPath = filepath.Join(o.Dir, "nsqd")
	if err := os.MkdirAll(opts.DataPath, 0o755); err != nil {
		return nil, err
	}
	opts.TCPAddress = orDefault(o.TCPAddr, "127.0.0.1:4150")
	opts.HTTPAddress = orDefault(o.HTTPAddr, "127.0.0.1:0")
	opts.HTTPSAddress = ""
	if o.MemQueue > 0 {
		opts.MemQueueSize = o.MemQueue
	}
	if o.DiskOnly {
		opts.MemQueueSize = 0
	}
	if o.TLSCert != "" {
		opts.TLSCert, opts.TLSKey = o.TLSCert, o.TLSKey
		opts.TLSRequired = nsqd.TLSRequired
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.Logger = nsqLogger{o.Log}
	opts.LogLevel = nsqd.LOG_WARN
	if len(o.Lookupds) > 0 {
		host, _, err := net.SplitHostPort(opts.TCPAddress)
		if err != nil {
			return nil, fmt.Errorf("start nsqd: %w", err)
		}
		opts.NSQLookupdTCPAddresses, opts.BroadcastAddress = o.Lookupds, host
	}
	n, err := nsqd.New(opts)
	if err != nil {
		return nil, fmt.Errorf("start nsqd: %w", err)
	}
	// New binds the listeners, so the addresses are final here.
	go n.Main()
	return &NSQD{n: n, TCPAddr: n.RealTCPAddr().String(), HTTPAddr: n.RealHTTPAddr().String()}, nil
}

// Close stops nsqd, persisting queued messages to its data directory. It
// is idempotent.
func (n *NSQD) Close() { n.once.Do(n.n.Exit) }

// Depth returns the number of messages queued on topic, 0 when nsqd has
// no such topic.
func (n *NSQD) Depth(topic string) int64 {
	t, err := n.n.GetExistingTopic(topic)
	if err != nil {
		return 0
	}
	return t.Depth()
}

// Lookupd is a running in-process nsqlookupd.
type Lookupd struct {
	l        *nsqlookupd.NSQLookupd
	once     sync.Once // Close's
	TCPAddr  string    // where nsqd register
	HTTPAddr string    // the HTTP API (GET /nodes, /lookup)
}

// StartLookupd starts an nsqlookupd on loopback ports of its own choosing.
func StartLookupd(log *slog.Logger) (*Lookupd, error) {
	opts := nsqlookupd.NewOptions()
	opts.TCPAddress, opts.HTTPAddress, opts.BroadcastAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.Logger = nsqLogger{log}
	opts.LogLevel = nsqlookupd.LOG_WARN
	l, err := nsqlookupd.New(opts)
	if err != nil {
		return nil, fmt.Errorf("start nsqlookupd: %w", err)
	}
	go l.Main()
	return &Lookupd{l: l, TCPAddr: l.RealTCPAddr().String(), HTTPAddr: l.RealHTTPAddr().String()}, nil
}

// Close stops nsqlookupd. It is idempotent.
func (l *Lookupd) Close() { l.once.Do(l.l.Exit) }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
