package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// role is a job one process of the cluster holds at a time, elected in
// etcd under a lease: the compactor's, the defragmenter's.
type role struct {
	cli      *clientv3.Client
	election string // the election's key prefix
	id       string // this process, as the election records it
	ttl      time.Duration
	log      *slog.Logger
	leading  atomic.Bool
}

// hold campaigns for the role and, once elected, calls elected, then work
// at once and every interval, until ctx ends (nil) or the session is lost
// (an error). Its lease outlives ctx, so that it is revoked on the way out:
// another process is then elected at once, not after the TTL.
func (r *role) hold(ctx context.Context, interval time.Duration, elected func(), work func(context.Context)) error {
	ttl := int64(r.ttl / time.Second)
	lease, err := r.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("grant the election lease: %w", err)
	}
	sess, err := concurrency.NewSession(r.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(ttl)),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("keep the election lease alive: %w", err)
	}
	defer r.release(sess)
	if err := concurrency.NewElection(sess, r.election).Campaign(ctx, r.id); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	r.leading.Store(true)
	defer r.leading.Store(false)
	elected()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		work(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("etcd session ended")
		case <-t.C:
		}
	}
}

// release ends the session and revokes its lease, giving up the role.
func (r *role) release(sess *concurrency.Session) {
	sess.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, sess.Lease()); err != nil {
		r.log.Debug("revoke the election lease (it expires within its TTL)", "election", r.election, "err", err)
	}
}
