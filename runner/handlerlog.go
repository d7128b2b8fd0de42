package runner

import (
	"context"
	"log/slog"
	"regexp"
	"strings"

	"github.com/jobx/jobx/kvmodel"
)

// logWriter logs a handler's stderr, a line at a time, at the line's own
// level: that of a line JobX's LOG (Python's logging) formatted, info for
// any other (PRINT, print, other languages, a traceback). The logger
// carries the request and invocation ids. special may consume a line (a
// NOTIFY) instead.
type logWriter struct {
	log     *slog.Logger
	tail    *logTail // nil: none kept
	special func(line string) bool
	partial []byte
}

// logTail keeps the last lines of a handler's log, at most
// kvmodel.MaxInvocationLog bytes.
type logTail struct {
	lines []string
	size  int
}

func (l *logTail) add(line string) {
	if len(line) > kvmodel.MaxInvocationLog {
		line = strings.ToValidUTF8(line[len(line)-kvmodel.MaxInvocationLog+1:], "")
	}
	l.lines = append(l.lines, line)
	l.size += len(line) + 1
	for l.size > kvmodel.MaxInvocationLog && len(l.lines) > 1 {
		l.size -= len(l.lines[0]) + 1
		l.lines = l.lines[1:]
	}
}

func (l *logTail) String() string { return strings.Join(l.lines, "\n") }

// pyLogLine matches the start of a line formatted by the Python runtime's
// LOG: "%(asctime)s %(levelname)s %(name)s: %(message)s".
var pyLogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) `)

// lineLevel is the level of a handler's stderr line.
func lineLevel(line string) slog.Level {
	m := pyLogLine.FindStringSubmatch(line)
	if m == nil {
		return slog.LevelInfo
	}
	switch m[1] {
	case "DEBUG":
		return slog.LevelDebug
	case "WARNING":
		return slog.LevelWarn
	case "ERROR", "CRITICAL":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		if line := string(w.partial[:i]); w.special == nil || !w.special(line) {
			w.log.Log(context.Background(), lineLevel(line), "handler log", "line", line)
			if w.tail != nil {
				w.tail.add(line)
			}
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}
