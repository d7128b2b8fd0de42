// Package queue is jobx's use of NSQ: message bodies, topics and a
// publisher that spreads messages over several nsqd, found statically or
// through nsqlookupd.
package queue

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/nsqio/go-nsq"
)

// Channel is the NSQ channel every runner consumes (JobX's MR_CHANNEL default).
const Channel = "general_worker"

// Message is the JSON body of a jobx NSQ message: ids, and on a map
// message's first publication a copy of what its publisher just wrote
// (Fresh).
type Message struct {
	JobClass     string `json:"job_class"` // "map" or "reduce"
	WorkflowName string `json:"workflow_name"`
	RequestID    string `json:"request_id"`
	InvocationID string `json:"invocation_id"`
	StepName     string `json:"step_name"`
	// MapInvocationID is, for a reduce message, the map invocation being
	// reduced (the reduce invocation's parent); it saves a read.
	MapInvocationID string `json:"map_invocation_id,omitempty"`
	// Fresh spares the message's first delivery its read. etcd stays the
	// record: a runner uses it on the first delivery only, and its commit
	// checks that the invocation was not written since its creation and
	// the request not since Fresh's revision (else the message is
	// requeued and read from etcd).
	Fresh *Fresh `json:"fresh,omitempty"`
}

// Fresh is a new map invocation as its publisher wrote it: the
// invocation's and its request's stored JSON, the request's revision, and
// the invocation's arguments dataset.
type Fresh struct {
	Invocation      json.RawMessage `json:"invocation"`
	Request         json.RawMessage `json:"request"`
	RequestRevision int64           `json:"request_revision"`
	Arguments       string          `json:"arguments"`
}

// MaxFreshArguments bounds the arguments a message carries: 500 such
// messages (one MPUB) stay well within nsqd's default 5 MiB body limit.
const MaxFreshArguments = 4 << 10

// NewFresh returns the Fresh copy, or nil when the arguments are too
// large to carry or a record is missing.
func NewFresh(invocation, request []byte, requestRevision int64, arguments []byte) *Fresh {
	if len(arguments) > MaxFreshArguments || invocation == nil || request == nil {
		return nil
	}
	return &Fresh{Invocation: invocation, Request: request, RequestRevision: requestRevision, Arguments: string(arguments)}
}

// Encode returns m's body.
func (m Message) Encode() []byte {
	b, _ := json.Marshal(m)
	return b
}

// Decode parses a message body.
func Decode(body []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("message body is not jobx JSON: %w", err)
	}
	if m.JobClass != "map" && m.JobClass != "reduce" {
		return m, fmt.Errorf("message job_class %q is not map or reduce", m.JobClass)
	}
	if m.WorkflowName == "" || m.RequestID == "" || m.InvocationID == "" {
		return m, fmt.Errorf("message lacks workflow_name, request_id or invocation_id")
	}
	return m, nil
}

// Publisher publishes to a set of nsqd, round-robin, falling over to the
// next nsqd when one fails. With nsqlookupd addresses it publishes to the
// nsqd they list as live, refreshed periodically and whenever every nsqd it
// knows fails; its static addresses are the fallback while the nsqlookupd
// list none or cannot be reached. It is safe for concurrent use; Close stops
// its refresh loop and producers.
type Publisher struct {
	opts PublisherOptions
	http *http.Client
	next atomic.Uint64

	mu         sync.Mutex // guards producers and discovered
	producers  map[string]*producer
	discovered []string // nsqd TCP addresses the nsqlookupd listed last; nil: none

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// NSQDs are nsqd TCP addresses (host:port): the publisher's targets
	// without Lookupds, its fallback with them.
	NSQDs []string
	// Lookupds are nsqlookupd HTTP addresses (host:port); GET /nodes on
	// them lists the live nsqd.
	Lookupds []string
	// Refresh is how often the nsqlookupd are asked (default 5 s).
	Refresh time.Duration
	// TLS, when not nil, makes nsqd connections use TLS.
	TLS *tls.Config
	Log *slog.Logger
}

// Config returns a go-nsq config, with TLS when tlsCfg is not nil.
func Config(tlsCfg *tls.Config) *nsq.Config {
	cfg := nsq.NewConfig()
	if tlsCfg != nil {
		cfg.TlsV1 = true
		cfg.TlsConfig = tlsCfg
	}
	return cfg
}

// NewPublisher connects lazily to each nsqd address (host:port), over TLS
// when tlsCfg is not nil.
func NewPublisher(addrs []string, tlsCfg *tls.Config, log *slog.Logger) (*Publisher, error) {
	return NewPublisherWith(PublisherOptions{NSQDs: addrs, TLS: tlsCfg, Log: log})
}

// NewPublisherWith validates o and, with Lookupds, asks them for the live
// nsqd once before returning (an unreachable nsqlookupd is logged, not an
// error: the static NSQDs serve meanwhile). Producers connect lazily.
func NewPublisherWith(o PublisherOptions) (*Publisher, error) {
	if len(o.NSQDs) == 0 && len(o.Lookupds) == 0 {
		return nil, fmt.Errorf("no nsqd address: set --nsqd (MR_NSQD_HOSTS) or --lookupd (JOBX_LOOKUPD)")
	}
	for _, a := range append(append([]string(nil), o.NSQDs...), o.Lookupds...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("nsq address %q: want host:port", a)
		}
	}
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Publisher{opts: o, http: &http.Client{Timeout: 2 * time.Second}, producers: map[string]*producer{}, stop: make(chan struct{})}
	if len(o.Lookupds) > 0 {
		p.refresh()
		p.wg.Add(1)
		go p.loop()
	}
	return p, nil
}

func (p *Publisher) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.refresh()
		}
	}
}

// refresh asks every nsqlookupd for its nsqd and records their union. When
// none answers, the previous list stays.
func (p *Publisher) refresh() {
	seen := map[string]bool{}
	var nodes []string
	answered := 0
	for _, l := range p.opts.Lookupds {
		got, err := LookupNodes(context.Background(), p.http, l)
		if err != nil {
			p.opts.Log.Warn("nsqlookupd does not answer", "lookupd", l, "err", err)
			continue
		}
		answered++
		for _, nd := range got {
			if n := nd.TCP; n != "" && !seen[n] {
				seen[n] = true
				nodes = append(nodes, n)
			}
		}
	}
	if answered == 0 {
		return
	}
	sort.Strings(nodes)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Equal(nodes, p.discovered) {
		p.opts.Log.Info("nsqd discovered", "nsqd", nodes)
	}
	p.discovered = nodes
	for addr, prod := range p.producers {
		if !seen[addr] && !slices.Contains(p.opts.NSQDs, addr) {
			prod.Stop()
			delete(p.producers, addr)
		}
	}
}

// Targets returns the nsqd addresses publishing uses now: the discovered
// ones, or the static ones while none is discovered.
func (p *Publisher) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targetsLocked()
}

func (p *Publisher) targetsLocked() []string {
	if len(p.discovered) > 0 {
		return slices.Clone(p.discovered)
	}
	return slices.Clone(p.opts.NSQDs)
}

// producer is a go-nsq Producer used for one connection only. go-nsq
// reconnects a Producer whose connection broke on its next publish, but
// that reconnect writes the connection while the exiting router goroutine
// of the old one still reads it (a data race, caught by the race detector
// when an nsqd restarts; go-nsq issues #171 and #345 report other faults of
// that path). So the Producer's own log lines are watched: the first error
// or router exit marks it broken, and the Publisher replaces it with a new
// one instead of letting it reconnect.
type producer struct {
	*nsq.Producer
	broken atomic.Bool
	log    nsqLog
}

// Output receives the Producer's (and its connection's) log lines.
func (pr *producer) Output(depth int, s string) error {
	if strings.HasPrefix(s, "ERR") || strings.Contains(s, "exiting router") {
		pr.broken.Store(true)
	}
	return pr.log.Output(depth, s)
}

// producer returns a usable producer of addr: the current one, or a new
// one when there is none or the current one's connection broke.
func (p *Publisher) producer(addr string) (*producer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr, ok := p.producers[addr]; ok {
		if !pr.broken.Load() {
			return pr, nil
		}
		pr.Stop()
		delete(p.producers, addr)
	}
	prod, err := nsq.NewProducer(addr, Config(p.opts.TLS))
	if err != nil {
		return nil, fmt.Errorf("nsqd %s: %w", addr, err)
	}
	pr := &producer{Producer: prod, log: NSQLogger(p.opts.Log)}
	prod.SetLogger(pr, nsq.LogLevelInfo) // Info: to see the router exit
	p.producers[addr] = pr
	return pr, nil
}

// discard drops a producer whose publish failed.
func (p *Publisher) discard(addr string, pr *producer) {
	pr.broken.Store(true)
	p.mu.Lock()
	if p.producers[addr] == pr {
		delete(p.producers, addr)
	}
	p.mu.Unlock()
	pr.Stop() // marks it stopped at once: a publisher still holding it fails instead of reconnecting it
}

// Publish sends bodies to topic (one MultiPublish round trip per 500). When
// every nsqd fails and nsqlookupd are configured, it asks them again and
// tries the nsqd it had not tried, then the static ones it had not tried.
func (p *Publisher) Publish(topic string, bodies ...[]byte) error {
	if len(bodies) == 0 {
		return nil
	}
	tried := map[string]bool{}
	errs := p.publishTo(topic, &bodies, p.Targets(), tried)
	if errs == nil {
		return nil
	}
	if len(p.opts.Lookupds) > 0 {
		p.refresh()
		var fresh []string
		for _, a := range append(p.Targets(), p.opts.NSQDs...) {
			if !tried[a] && !slices.Contains(fresh, a) {
				fresh = append(fresh, a)
			}
		}
		if len(fresh) > 0 {
			err := p.publishTo(topic, &bodies, fresh, tried)
			if err == nil {
				return nil
			}
			errs = multierror.Append(errs, err)
		}
	}
	return errs
}

// publishTo tries addrs round-robin until one takes every body; bodies
// shrinks as batches succeed.
func (p *Publisher) publishTo(topic string, bodies *[][]byte, addrs []string, tried map[string]bool) error {
	var errs error
	start := p.next.Add(1)
	for i := range addrs {
		addr := addrs[(int(start)+i)%len(addrs)]
		tried[addr] = true
		prod, err := p.producer(addr)
		for err == nil && len(*bodies) > 0 {
			n := min(len(*bodies), 500)
			if n == 1 {
				err = prod.Publish(topic, (*bodies)[0])
			} else {
				err = prod.MultiPublish(topic, (*bodies)[:n])
			}
			if err == nil {
				*bodies = (*bodies)[n:]
			}
		}
		if err == nil {
			return nil
		}
		if prod != nil {
			p.discard(addr, prod)
		}
		errs = multierror.Append(errs, fmt.Errorf("publish to %s on %s: %w", topic, addr, err))
	}
	if errs == nil {
		errs = fmt.Errorf("publish to %s: no nsqd to publish to", topic)
	}
	return errs
}

// Close stops the refresh loop and every producer. It is idempotent.
func (p *Publisher) Close() {
	p.closeOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, prod := range p.producers {
			prod.Stop()
		}
	})
}

// NSQLogger adapts slog to go-nsq's logger interface.
func NSQLogger(log *slog.Logger) nsqLog {
	if log == nil {
		log = slog.Default()
	}
	return nsqLog{log}
}

type nsqLog struct{ log *slog.Logger }

func (l nsqLog) Output(_ int, s string) error {
	l.log.Debug("nsq: " + s)
	return nil
}
