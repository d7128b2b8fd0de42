package gateway

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a Gateway. Start from NewOptions.
type Options struct {
	// Addr is the HTTP listen address (host:port; port 0 picks one).
	Addr string
	// Etcd is the etcd client; required. The gateway does not close it.
	Etcd *clientv3.Client
	// NSQDs are the nsqd TCP addresses to publish to (with Lookupds: while
	// the nsqlookupd list no nsqd).
	NSQDs []string
	// Lookupds are nsqlookupd HTTP addresses; when set, the gateway
	// publishes to the live nsqd they list.
	Lookupds []string
	// MaxBodyBytes bounds a request body (--max-body); larger bodies get
	// 413. Each argument is also bounded, by kvmodel.MaxItemBytes.
	MaxBodyBytes int64
	// BlockingTimeout bounds a blocking request's wait; past it the
	// gateway answers 504 with the request id while the job goes on.
	BlockingTimeout time.Duration
	// DeliveredRetention is how long a blocking request is kept after its
	// result was delivered (0: cleaned up at once). Requests submitted
	// with keep=true are never cleaned up automatically.
	DeliveredRetention time.Duration
	// Retention is how long a request that failed on arrival (no runner
	// offers a capability it needs) is kept for GET /request.
	Retention time.Duration
	// NSQTLS, when set, makes the connections to nsqd use TLS.
	NSQTLS *tls.Config
	// Tokens, when not empty, are required on every route that names a
	// workflow: workflow name (or AllWorkflows) -> accepted bearer tokens.
	Tokens map[string][]string
	// TLSCert and TLSKey, when set, make the gateway serve HTTPS.
	TLSCert, TLSKey string
	// Hostname is sent as X-FULFILLED-BY.
	Hostname string
	Log      *slog.Logger
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	host, _ := os.Hostname()
	return &Options{
		Addr:            "127.0.0.1:8080",
		MaxBodyBytes:    8 << 20,
		BlockingTimeout: 5 * time.Minute,
		Retention:       time.Hour,
		Hostname:        host,
	}
}

func (o *Options) validate() error {
	if o.Etcd == nil {
		return errors.New("gateway: no etcd client (--etcd / MR_ETCD_HOST)")
	}
	if len(o.NSQDs) == 0 && len(o.Lookupds) == 0 {
		return errors.New("gateway: no nsqd address (--nsqd / MR_NSQD_HOSTS, or --lookupd / JOBX_LOOKUPD)")
	}
	if o.MaxBodyBytes <= 0 {
		return errors.New("gateway: --max-body must be positive")
	}
	if o.BlockingTimeout <= 0 {
		return errors.New("gateway: --blocking-timeout must be positive")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("gateway: --tls-cert and --tls-key go together")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return nil
}
