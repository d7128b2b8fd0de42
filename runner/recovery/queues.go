package recovery

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jobx/jobx/internal/queue"
)

// queueWatch is the recovery runner's view of the cluster's nsqd. Each look
// reads the /stats of every nsqd (the HTTP addresses in Options.NSQDHTTP
// and those the nsqlookupd in Options.Lookupds list) and reports what each
// topic queues and has in flight, and which nsqd's life ended since the
// last look: one that stopped answering (twice in a row), restarted (a new
// start time, or message counts that went back) or that nsqlookupd no
// longer lists. An nsqd whose life ended may have taken messages with it.
// It is used by one goroutine.
type queueWatch struct {
	static   []string // nsqd HTTP addresses
	lookupds []string // nsqlookupd HTTP addresses
	channel  string
	client   *http.Client
	nsqd     map[string]*nsqdLife // by HTTP address
}

// nsqdLife is what a look knows of one nsqd.
type nsqdLife struct {
	// alive: it answered the last look, or it is presumed to (configured,
	// or listed by nsqlookupd) and has not failed two looks yet. A gateway
	// may have published to it before this runner's first look.
	alive   bool
	start   int64             // its start time; 0 until it answers
	counts  map[string]uint64 // messages each topic took since the start
	failing int               // looks in a row it did not answer
}

// queueView is the queues of one look, summed over the nsqd that answered.
type queueView struct {
	// waiting counts, by topic, the messages queued on the topic or on the
	// runners' channel, or deferred (requeued with a delay).
	waiting map[string]int64
	// inFlight counts, by topic, the runners' channel's messages in flight.
	inFlight map[string]int64
	// complete is false while an nsqd that was seen alive does not answer
	// (its queues are unknown until it answers or its life is declared
	// ended).
	complete bool
}

func newQueueWatch(nsqdHTTP, lookupds []string, channel string) *queueWatch {
	if len(nsqdHTTP) == 0 && len(lookupds) == 0 {
		return nil
	}
	// A new connection each look: an answer comes from the nsqd listening
	// now, never from a connection kept to an earlier one.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return &queueWatch{static: nsqdHTTP, lookupds: lookupds, channel: channel, client: client, nsqd: map[string]*nsqdLife{}}
}

// look reads every nsqd once. ended says, for each nsqd whose life ended
// since the last look, why.
func (w *queueWatch) look(ctx context.Context) (v queueView, ended []string) {
	v = queueView{waiting: map[string]int64{}, inFlight: map[string]int64{}, complete: true}
	addrs := slices.Clone(w.static)
	listed, err := w.listed(ctx)
	if err != nil {
		// nsqlookupd down: the nsqd it listed are still watched.
		for a := range w.nsqd {
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	for _, a := range listed {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for a, l := range w.nsqd {
		if !slices.Contains(addrs, a) {
			delete(w.nsqd, a)
			if l.alive {
				ended = append(ended, "nsqd "+a+" is no longer listed by nsqlookupd")
			}
		}
	}
	for _, a := range addrs {
		l := w.nsqd[a]
		if l == nil {
			l = &nsqdLife{alive: true}
			w.nsqd[a] = l
		}
		st, err := queue.FetchStats(ctx, w.client, a)
		if err != nil {
			if !l.alive {
				continue // declared dead already
			}
			if l.failing++; l.failing < 2 {
				v.complete = false
				continue
			}
			ended = append(ended, fmt.Sprintf("nsqd %s does not answer: %v", a, err))
			*l = nsqdLife{}
			continue
		}
		counts := map[string]uint64{}
		for _, tp := range st.Topics {
			counts[tp.Name] = tp.MessageCount
			v.waiting[tp.Name] += tp.Depth
			for _, ch := range tp.Channels {
				if ch.Name == w.channel {
					v.waiting[tp.Name] += ch.Depth + ch.Deferred
					v.inFlight[tp.Name] += ch.InFlight
				}
			}
		}
		if l.start != 0 && (st.StartTime != l.start || wentBack(l.counts, counts)) {
			ended = append(ended, "nsqd "+a+" restarted")
		}
		*l = nsqdLife{alive: true, start: st.StartTime, counts: counts}
	}
	return v, ended
}

// wentBack reports whether a topic counted before has fewer messages now,
// or is gone: nsqd counts from its start, so it restarted.
func wentBack(before, now map[string]uint64) bool {
	for t, n := range before {
		if m, ok := now[t]; !ok || m < n {
			return true
		}
	}
	return false
}

// listed returns the HTTP addresses of the nsqd the nsqlookupd list; an
// error when none of them answers.
func (w *queueWatch) listed(ctx context.Context) ([]string, error) {
	if len(w.lookupds) == 0 {
		return nil, nil
	}
	var out []string
	var lastErr error
	answered := false
	for _, l := range w.lookupds {
		nodes, err := queue.LookupNodes(ctx, w.client, l)
		if err != nil {
			lastErr = err
			continue
		}
		answered = true
		for _, nd := range nodes {
			if n := nd.HTTP; n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	if !answered {
		return nil, lastErr
	}
	return out, nil
}
