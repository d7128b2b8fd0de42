package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Options configure a cluster. NewOptions returns the defaults: embedded
// etcd and nsqd and a gateway, all on loopback ports the kernel picks.
type Options struct {
	// Dir holds the embedded etcd's and nsqd's data (<Dir>/etcd,
	// <Dir>/nsqd), where Etcd.Dir and NSQD.Dir are empty. A cluster
	// started again on the same Dir finds its definitions and queued
	// messages.
	Dir string

	// Etcd configures the embedded etcd, started unless EtcdEndpoints is
	// set.
	Etcd embedded.EtcdOptions
	// EtcdEndpoints are an external etcd's client URLs; set, no etcd is
	// embedded.
	EtcdEndpoints []string
	// Client, when set, is the etcd client of the gateway and of the
	// runners whose options name none, instead of one the cluster dials.
	// It is the caller's: Close leaves it open. It needs EtcdEndpoints.
	Client *clientv3.Client
	// Dial makes the cluster's etcd client when Client is nil; nil dials
	// with a 5 s timeout and no client logs.
	Dial func(endpoints []string) (*clientv3.Client, error)

	// NSQD configures the in-process nsqd, started unless NSQDs is set.
	NSQD embedded.NSQDOptions
	// NSQDs are external nsqd TCP addresses; set, no nsqd runs in-process.
	NSQDs []string

	// Load, when set, is called with the store once etcd answers and
	// before the gateway and the runners start, so that both see what it
	// writes from their first moment.
	Load func(context.Context, *kvmodel.Store) error

	// Gateway is the gateway's options; Start fills in its etcd client,
	// nsqd addresses and logger where they are unset, on a copy.
	Gateway *gateway.Options
	// Runners are the options of the runners Start starts, in order (more
	// may be added with AddRunner); see AddRunner for what is filled in.
	Runners []*runner.Options

	// Log is the logger of the components whose options name none.
	Log *slog.Logger
}

// NewOptions returns the options of a cluster on loopback ports the kernel
// picks, with gateway.NewOptions' defaults otherwise and no runner. Dir
// must still be set, unless etcd and nsqd are both external.
func NewOptions() *Options {
	gw := gateway.NewOptions()
	gw.Addr = "127.0.0.1:0"
	return &Options{
		Etcd:    embedded.EtcdOptions{ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"},
		NSQD:    embedded.NSQDOptions{TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		Gateway: gw,
	}
}

// validate checks what can be checked before anything starts.
func (o *Options) validate() error {
	switch {
	case o.Gateway == nil:
		return errors.New("cluster: no gateway options")
	case o.Client != nil && len(o.EtcdEndpoints) == 0:
		return errors.New("cluster: an etcd client needs the endpoints of its etcd (EtcdEndpoints)")
	case len(o.EtcdEndpoints) == 0 && o.Dir == "" && o.Etcd.Dir == "":
		return errors.New("cluster: no directory for the embedded etcd (Dir)")
	case len(o.NSQDs) == 0 && o.Dir == "" && o.NSQD.Dir == "":
		return errors.New("cluster: no directory for the in-process nsqd (Dir)")
	}
	for _, r := range o.Runners {
		if r == nil {
			return errors.New("cluster: nil runner options")
		}
	}
	return nil
}

// dialEtcd is the default Dial.
func dialEtcd(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}
