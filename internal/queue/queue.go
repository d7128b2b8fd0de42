// Package queue is jobx's use of NSQ: message bodies, topics and a
// publisher that spreads messages over several nsqd.
package queue

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-multierror"
	"github.com/nsqio/go-nsq"
)

// Channel is the NSQ channel every runner consumes (JobX's MR_CHANNEL default).
const Channel = "general_worker"

// Message is the JSON body of a jobx NSQ message. It carries ids, never data.
type Message struct {
	JobClass     string `json:"job_class"` // "map" or "reduce"
	WorkflowName string `json:"workflow_name"`
	RequestID    string `json:"request_id"`
	InvocationID string `json:"invocation_id"`
	StepName     string `json:"step_name"`
	// MapInvocationID is, for a reduce message, the map invocation being
	// reduced (the reduce invocation's parent); it saves a read.
	MapInvocationID string `json:"map_invocation_id,omitempty"`
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
// next nsqd when one fails. It is safe for concurrent use.
type Publisher struct {
	producers []*nsq.Producer
	next      atomic.Uint64
	closeOnce sync.Once
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
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no nsqd address: set --nsqd or MR_NSQD_HOSTS")
	}
	p := &Publisher{}
	for _, a := range addrs {
		cfg := Config(tlsCfg)
		prod, err := nsq.NewProducer(a, cfg)
		if err != nil {
			return nil, fmt.Errorf("nsqd %s: %w", a, err)
		}
		prod.SetLogger(NSQLogger(log), nsq.LogLevelWarning)
		p.producers = append(p.producers, prod)
	}
	return p, nil
}

// Publish sends bodies to topic (one MultiPublish round trip).
func (p *Publisher) Publish(topic string, bodies ...[]byte) error {
	if len(bodies) == 0 {
		return nil
	}
	var errs error
	start := p.next.Add(1)
	for i := range p.producers {
		prod := p.producers[(int(start)+i)%len(p.producers)]
		var err error
		for len(bodies) > 0 && err == nil {
			n := min(len(bodies), 500)
			if n == 1 {
				err = prod.Publish(topic, bodies[0])
			} else {
				err = prod.MultiPublish(topic, bodies[:n])
			}
			if err == nil {
				bodies = bodies[n:]
			}
		}
		if err == nil {
			return nil
		}
		errs = multierror.Append(errs, fmt.Errorf("publish to %s on %s: %w", topic, prod.String(), err))
	}
	return errs
}

// Close stops every producer.
func (p *Publisher) Close() {
	p.closeOnce.Do(func() {
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
