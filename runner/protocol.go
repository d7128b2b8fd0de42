package runner

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
)

// lineWriter splits a handler's stdout into lines and hands each to fn.
// The first error from fn is kept and later lines are ignored.
type lineWriter struct {
	partial []byte
	line    int
	fn      func(n int, line []byte) error
	err     error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.emit(line)
		p = p[i+1:]
	}
	return n, nil
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
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
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
