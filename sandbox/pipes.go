package sandbox

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Pipes are a handler's stdio pipes for a Sandbox that hands file
// descriptors to another process (a zygote, an agent): the child ends go to
// the handler, the parent ends are pumped to and from the run's streams.
type Pipes struct {
	// Stdin, Stdout and Stderr are the child ends.
	Stdin, Stdout, Stderr *os.File
	inW, outR, errR       *os.File
	wg                    sync.WaitGroup
	once                  sync.Once
	done                  chan struct{} // closed when wg is done
}

// NewPipes makes the three pipes. The caller must Close them.
func NewPipes() (*Pipes, error) {
	p := &Pipes{}
	var errs [3]error
	p.Stdin, p.inW, errs[0] = os.Pipe()
	p.outR, p.Stdout, errs[1] = os.Pipe()
	p.errR, p.Stderr, errs[2] = os.Pipe()
	if err := errors.Join(errs[:]...); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// CloseChildEnds closes this process's copies of the child ends, once the
// handler has them (else the output pipes never reach EOF).
func (p *Pipes) CloseChildEnds() {
	closeAll(p.Stdin, p.Stdout, p.Stderr)
}

// Pump copies stdin (if any) into the handler and its stdout and stderr
// into st, in the background, until Finish.
func (p *Pipes) Pump(stdin io.Reader, st *Streams) {
	p.wg.Add(3)
	go func() {
		defer p.wg.Done()
		if stdin != nil {
			io.Copy(p.inW, stdin)
		}
		p.inW.Close()
	}()
	go func() { defer p.wg.Done(); io.Copy(st.Stdout, p.outR) }()
	go func() { defer p.wg.Done(); io.Copy(st.Stderr, p.errR) }()
}

// Drained waits up to grace for the pumps to reach the end of the
// handler's output, and reports whether they did: false means something
// still holds the pipes open. It closes nothing; Finish ends the pumps.
func (p *Pipes) Drained(grace time.Duration) bool {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.copied():
		return true
	case <-t.C:
		return false
	}
}

// Finish waits for the pumps after the handler has exited; when something
// it left still holds the pipes open past grace, it closes this process's
// ends to stop them and returns false.
func (p *Pipes) Finish(grace time.Duration) bool {
	copied := p.copied()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-copied:
		return true
	case <-t.C:
		closeAll(p.inW, p.outR, p.errR)
		<-copied
		return false
	}
}

// copied is closed once the pumps are done.
func (p *Pipes) copied() <-chan struct{} {
	p.once.Do(func() {
		p.done = make(chan struct{})
		go func() { p.wg.Wait(); close(p.done) }()
	})
	return p.done
}

// Close closes every end; it may be called more than once.
func (p *Pipes) Close() {
	closeAll(p.Stdin, p.Stdout, p.Stderr, p.inW, p.outR, p.errR)
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
