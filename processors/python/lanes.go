package python

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/jobx/jobx/internal/spawn"
)

// A lane is a kept (parked) child whose control socket the zygote handed
// over to this client. A run with a reuse key asks for it ("lane": true):
// when the child is kept, the zygote's final reply carries the socket, and
// the key's next run goes straight to the child, which answers with its
// status line on the same socket. That saves the zygote's two hops (about
// 0.2 ms of the zygote's CPU and two process wake-ups per run) on every
// reused run. The zygote still reaps the child; the client retires it by
// killing its group and closing the socket, and asks the zygote how it
// ended when the socket closes without a status.
type lane struct {
	pid   int
	conn  *net.UnixConn
	since time.Time // when it was last kept
}

// laneKey is what a kept child may run again: the runtime's _reuse_key.
type laneKey struct{ reuse, path, typ string }

// The bounds the runtime applies to the children it keeps itself
// (Zygote.PARK_SECONDS, MAX_PARKED, MAX_PARKED_TOTAL).
const (
	maxLanesPerKey = 16
	maxLanes       = 32
)

// parkFor is how long a kept child may wait for its next run:
// JOBX_ZYGOTE_PARK_SECONDS, as the runtime reads it (when the zygote
// starts), 1 s by default.
func parkFor() time.Duration {
	if s := os.Getenv("JOBX_ZYGOTE_PARK_SECONDS"); s != "" {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second))
		}
	}
	return time.Second
}

// retire ends a kept child: its group is killed and its socket closed.
func (l *lane) retire(killGroup func(int) error) {
	killGroup(l.pid)
	l.conn.Close()
}

// laneFrom wraps a received socket fd; nil (and the fd closed) on error.
func laneFrom(pid, fd int) *lane {
	f := os.NewFile(uintptr(fd), "lane")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil
	}
	return &lane{pid: pid, conn: uc}
}

// spawnOnLane sends the run (its request line and three fds) to a child
// kept for key, the last kept first. It returns nil when none is kept or
// none takes it (a child that died meanwhile is retired).
func (z *Zygote) spawnOnLane(ctx context.Context, key laneKey, msg spawn.ZygoteRequest, files []*os.File) *Child {
	for {
		z.mu.Lock()
		ls := z.lanes[key]
		if len(ls) == 0 || z.closed {
			z.mu.Unlock()
			return nil
		}
		l := ls[len(ls)-1]
		if len(ls) == 1 {
			delete(z.lanes, key)
		} else {
			z.lanes[key] = ls[:len(ls)-1]
		}
		z.mu.Unlock()

		sc, err := spawn.Resume(ctx, l.conn, l.pid, msg, files[0], files[1], files[2])
		if err != nil {
			l.retire(z.killGroup)
			continue
		}
		c := &Child{pid: l.pid, z: z, sc: sc, lane: l.conn, key: key}
		z.mu.Lock()
		if z.closed {
			z.mu.Unlock()
			l.retire(z.killGroup)
			return nil
		}
		z.children[c] = struct{}{}
		z.mu.Unlock()
		return c
	}
}

// park keeps l for key's next run, within the bounds, and has idle lanes
// retired after parkFor.
func (z *Zygote) park(key laneKey, l *lane) {
	l.since = time.Now()
	var drop []*lane
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		l.retire(z.killGroup)
		return
	}
	ls := append(z.lanes[key], l)
	if len(ls) > maxLanesPerKey {
		drop = append(drop, ls[0])
		ls = ls[1:]
	}
	z.lanes[key] = ls
	for z.laneCount() > maxLanes {
		drop = append(drop, z.dropOldestLane())
	}
	if z.sweep == nil {
		z.sweep = time.AfterFunc(z.parkFor, z.sweepLanes)
	}
	z.mu.Unlock()
	for _, d := range drop {
		d.retire(z.killGroup)
	}
}

// laneCount is the number of kept lanes; z.mu must be held.
func (z *Zygote) laneCount() int {
	n := 0
	for _, ls := range z.lanes {
		n += len(ls)
	}
	return n
}

// dropOldestLane removes the lane kept longest ago; z.mu must be held and
// a lane kept.
func (z *Zygote) dropOldestLane() *lane {
	var oldest laneKey
	var found *lane
	for k, ls := range z.lanes {
		if found == nil || ls[0].since.Before(found.since) {
			oldest, found = k, ls[0]
		}
	}
	if ls := z.lanes[oldest][1:]; len(ls) > 0 {
		z.lanes[oldest] = ls
	} else {
		delete(z.lanes, oldest)
	}
	return found
}

// sweepLanes retires the lanes idle for parkFor and runs again when the
// next one is due.
func (z *Zygote) sweepLanes() {
	idle := z.parkFor
	now := time.Now()
	var drop []*lane
	z.mu.Lock()
	var next time.Duration = -1
	for k, ls := range z.lanes {
		keep := ls[:0]
		for _, l := range ls {
			if left := idle - now.Sub(l.since); left > 0 {
				keep = append(keep, l)
				if next < 0 || left < next {
					next = left
				}
			} else {
				drop = append(drop, l)
			}
		}
		if len(keep) == 0 {
			delete(z.lanes, k)
		} else {
			z.lanes[k] = keep
		}
	}
	z.sweep = nil
	if next >= 0 && !z.closed {
		z.sweep = time.AfterFunc(next, z.sweepLanes)
	}
	z.mu.Unlock()
	for _, l := range drop {
		l.retire(z.killGroup)
	}
}

// retireLanes retires every kept lane (at close, or when the zygote died).
func (z *Zygote) retireLanes() {
	z.mu.Lock()
	var drop []*lane
	for _, ls := range z.lanes {
		drop = append(drop, ls...)
	}
	clear(z.lanes)
	if z.sweep != nil {
		z.sweep.Stop()
		z.sweep = nil
	}
	z.mu.Unlock()
	for _, l := range drop {
		l.retire(z.killGroup)
	}
}

// statusOf asks the zygote how the lane child pid ended; it answers once
// it has reaped the child.
func (z *Zygote) statusOf(pid int) (ExitStatus, error) {
	fail := func(err error) (ExitStatus, error) {
		if derr := z.deadErr(); derr != nil {
			err = derr
		}
		return ExitStatus{}, fmt.Errorf("wait for pid %d: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := spawn.Query(ctx, z.sock, spawn.StatusQuery{Pid: pid})
	switch {
	case err != nil:
		return fail(err)
	case reply.Error != "":
		return fail(errors.New(reply.Error))
	case reply.Signal != nil:
		return ExitStatus{Code: -1, Signal: *reply.Signal}, nil
	case reply.ExitCode != nil:
		return ExitStatus{Code: *reply.ExitCode}, nil
	}
	return fail(fmt.Errorf("unexpected reply %s", reply))
}

// Keeps reports whether the zygote's client holds a kept child (a lane)
// for the next run of handler file path of type typ under reuse key reuse.
func (z *Zygote) Keeps(reuse, path, typ string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.lanes[laneKey{reuse: reuse, path: path, typ: typ}]) > 0
}
