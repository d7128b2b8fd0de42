package runner

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
)

// lineWriter splits a handler's stdout into lines and hands each to fn.
// The first error from fn is kept and later lines are ignored. A line
// longer than max (when max > 0) is not kept: it is counted, skipped, and
// fails the output with a *kvmodel.LimitError.
type lineWriter struct {
	partial []byte
	line    int
	fn      func(n int, line []byte) error
	err     error
	max     int   // the longest line, in bytes (kvmodel.MaxItemBytes); 0: any
	skipped int64 // bytes so far of a line over max, not kept
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.keep(p)
			break
		}
		switch {
		case len(w.partial) == 0 && w.skipped == 0 && (w.max <= 0 || i <= w.max):
			w.emit(p[:i]) // the common case: a whole line, not copied
		default:
			w.keep(p[:i])
			if w.skipped > 0 {
				w.tooLong()
			} else {
				w.emit(w.partial)
			}
			w.partial = w.partial[:0]
		}
		p = p[i+1:]
	}
	return n, nil
}

// keep adds p to the line being read, or counts it once the line is over
// max.
func (w *lineWriter) keep(p []byte) {
	switch {
	case w.skipped > 0:
		w.skipped += int64(len(p))
	case w.max > 0 && len(w.partial)+len(p) > w.max:
		w.skipped = int64(len(w.partial) + len(p))
		w.partial = nil
	default:
		w.partial = append(w.partial, p...)
	}
}

// tooLong reports the skipped line.
func (w *lineWriter) tooLong() {
	w.line++
	if w.err == nil {
		w.err = &kvmodel.LimitError{What: fmt.Sprintf("stdout line %d", w.line), Size: w.skipped, Limit: int64(w.max), Name: "dataset item"}
	}
	w.skipped = 0
}

func (w *lineWriter) emit(line []byte) {
	w.line++
	if w.err != nil || len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if err := w.fn(w.line, line); err != nil {
		w.err = err
	}
}

// Close handles a last line without a newline and returns the first error.
func (w *lineWriter) Close() error {
	switch {
	case w.skipped > 0:
		w.tooLong()
	case len(w.partial) > 0:
		w.emit(w.partial)
	}
	w.partial = nil
	return w.err
}

// protocolError is a handler output that breaks the stdout protocol.
type protocolError struct {
	line int
	msg  string
	text []byte
}

func (e *protocolError) Error() string {
	snippet := e.text
	if len(snippet) > 120 {
		snippet = append(snippet[:120:120], "..."...)
	}
	return fmt.Sprintf("stdout line %d: %s: %q", e.line, e.msg, snippet)
}

// collector gathers one handler run's stdout lines; reset empties it
// before a retry.
type collector interface {
	line(n int, line []byte) error
	reset()
}

func (o *mapperOutput) reset() { *o = mapperOutput{} }
func (o *pairsOutput) reset()  { *o = pairsOutput{} }
func (o *groupsOutput) reset() { *o = groupsOutput{} }

// directive is a mapper's first output line.
type directive struct {
	Jobx string `json:"jobx"`
	Step string `json:"step"`
}

// mapperOutput collects a mapper's stdout: a directive, then pairs.
type mapperOutput struct {
	directive *directive
	pairs     []kvmodel.Pair
}

func (o *mapperOutput) line(n int, line []byte) error {
	if o.directive == nil {
		var d directive
		if err := json.Unmarshal(line, &d); err != nil || (d.Jobx != "return" && d.Jobx != "map") {
			return &protocolError{n, `a mapper's first line must be {"jobx":"return"} or {"jobx":"map","step":"<step>"}`, line}
		}
		if d.Jobx == "map" && d.Step == "" {
			return &protocolError{n, `a "map" directive must name its "step"`, line}
		}
		o.directive = &d
		return nil
	}
	p, err := kvmodel.ParsePair(line)
	if err != nil {
		return &protocolError{n, err.Error(), line}
	}
	o.pairs = append(o.pairs, p)
	return nil
}

// pairsOutput collects a reducer's [key, value] lines.
type pairsOutput struct{ pairs []kvmodel.Pair }

func (o *pairsOutput) line(n int, line []byte) error {
	p, err := kvmodel.ParsePair(line)
	if err != nil {
		return &protocolError{n, err.Error(), line}
	}
	o.pairs = append(o.pairs, p)
	return nil
}

// groupsOutput collects a combiner's [key, [values...]] lines.
type groupsOutput struct{ groups []kvmodel.Group }

func (o *groupsOutput) line(n int, line []byte) error {
	g, err := kvmodel.ParseGroup(line)
	if err != nil {
		return &protocolError{n, err.Error(), line}
	}
	o.groups = append(o.groups, g)
	return nil
}

// pairLines renders pairs as the stdin of a mapper.
func pairLines(pairs []kvmodel.Pair) []byte {
	var b []byte
	for _, p := range pairs {
		b = append(b, '[')
		b = append(b, p.Key...)
		b = append(b, ',')
		b = append(b, p.Value...)
		b = append(b, "]\n"...)
	}
	return b
}

// groupLines renders groups as the stdin of a combiner or reducer.
func groupLines(groups []kvmodel.Group) []byte {
	var b []byte
	for _, g := range groups {
		j, _ := g.MarshalJSON()
		b = append(b, j...)
		b = append(b, '\n')
	}
	return b
}
