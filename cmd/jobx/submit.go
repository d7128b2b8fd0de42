package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

// submitOptions are submit's flags.
type submitOptions struct {
	args   []string
	json   string
	wait   bool
	noWait bool
	keep   bool
	poll   time.Duration
}

func (a *app) submitCmd() *cobra.Command {
	var o submitOptions
	cmd := &cobra.Command{
		Use:   "submit <workflow> <job> [-a key=value]... [--json '{...}']",
		Short: "Submit a job to the gateway and print its result",
		Long: `Submit a job: POST /job/<workflow>/<job> on --gateway with {"arguments": {...}}.
An -a value that is valid JSON is sent as JSON (-a n=3 sends 3, -a l='[1,2]' a
list), anything else as a string; --json gives the arguments as one JSON object
(-a pairs are added after it, in order).

By default the request blocks and the result pairs are printed, one
key<TAB>value line each (-o json prints the gateway's response). --no-wait
submits a non-blocking request and prints its id. --wait submits a
non-blocking request and polls GET /request/<workflow>/<id> until it is done,
showing its progress (invocations done / known) on stderr: a live bar on a
terminal, a line per change otherwise. A blocking request that outlives the
gateway's --blocking-timeout is polled the same way.

A failed request prints its error (kind, handler, invocation, exit status,
stderr tail) on stderr and exits with status 1.`,
		Example: `  jobx submit dev job4 -a arg1=17413412
  jobx submit dev job4 --json '{"arg1": 17413412}' -o json
  jobx submit dev job4 -a arg1=17413412 --wait --keep
  jobx submit dev job5 -a arg1=100 --no-wait`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.submit(cmd.Context(), cmd, args[0], args[1], o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.args, "argument", "a", nil, "an argument key=value (value parsed as JSON when it is valid JSON)")
	f.StringVar(&o.json, "json", "", "the arguments as a JSON object")
	f.BoolVar(&o.wait, "wait", true, "wait for the result; given explicitly: submit non-blocking and poll, showing progress")
	f.BoolVar(&o.noWait, "no-wait", false, "submit non-blocking and print the request id")
	f.BoolVar(&o.keep, "keep", false, "keep the request after it is done, for tracing (cleanup: jobx request cleanup)")
	f.DurationVar(&o.poll, "poll-interval", time.Second, "longest interval between polls")
	return cmd
}

// arguments builds the ordered arguments object.
func (o submitOptions) arguments() ([]byte, error) {
	type kv struct {
		k string
		v json.RawMessage
	}
	var pairs []kv
	if o.json != "" {
		dec := json.NewDecoder(strings.NewReader(o.json))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return nil, fmt.Errorf("--json: want a JSON object")
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("--json: %w", err)
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("--json: %w", err)
			}
			pairs = append(pairs, kv{tok.(string), v})
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("--json: %w", err)
		}
	}
	for _, a := range o.args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-a %q: want key=value", a)
		}
		raw := json.RawMessage(v)
		if !json.Valid(raw) {
			raw, _ = json.Marshal(v)
		}
		pairs = append(pairs, kv{k, raw})
	}
	var b bytes.Buffer
	b.WriteString(`{"arguments":{`)
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.k)
		b.Write(k)
		b.WriteByte(':')
		b.Write(p.v)
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}

// jobResponse is the part of the gateway's answers submit reads.
type jobResponse struct {
	RequestID string                             `json:"request_id"`
	State     string                             `json:"state"`
	Result    *struct{ Pairs []json.RawMessage } `json:"result"`
	Error     json.RawMessage                    `json:"error"`
	Progress  *gateway.Progress                  `json:"progress"`
}

func (a *app) submit(ctx context.Context, cmd *cobra.Command, wf, job string, o submitOptions) error {
	body, err := o.arguments()
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(a.gateway, "/")
	if _, err := url.Parse(base); err != nil || !strings.HasPrefix(base, "http") {
		return fmt.Errorf("--gateway %q: want an http(s) URL", a.gateway)
	}
	poll := cmd.Flags().Changed("wait") && o.wait
	blocking := !o.noWait && !poll
	q := url.Values{"blocking": {fmt.Sprint(blocking)}}
	if o.keep {
		q.Set("keep", "true")
	}
	u := base + "/job/" + url.PathEscape(wf) + "/" + url.PathEscape(job) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("submit to gateway %s: %w", base, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read the gateway's answer: %w", err)
	}
	id := resp.Header.Get(gateway.HeaderRequestID)
	switch {
	case resp.StatusCode == http.StatusAccepted:
		if !poll {
			fmt.Fprintln(a.stdout, id)
			return nil
		}
		fmt.Fprintf(a.stderr, "request %s submitted; waiting for it\n", id)
	case resp.StatusCode == http.StatusGatewayTimeout && id != "":
		fmt.Fprintf(a.stderr, "request %s outlived the gateway's blocking timeout; polling\n", id)
	default:
		return a.finish(resp.StatusCode, raw)
	}
	return a.pollRequest(ctx, base, wf, id, o.poll)
}

// pollRequest polls GET /request/<wf>/<id> until the request is done,
// reporting its progress on stderr.
func (a *app) pollRequest(ctx context.Context, base, wf, id string, maxInterval time.Duration) error {
	u := base + "/request/" + url.PathEscape(wf) + "/" + url.PathEscape(id)
	interval := 50 * time.Millisecond
	pr := newProgressReporter(a.stderr, id)
	defer pr.finish()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("poll request %s: %w", id, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("poll request %s: %w", id, err)
		}
		if resp.StatusCode != http.StatusOK {
			return a.finish(resp.StatusCode, raw)
		}
		var jr jobResponse
		if err := json.Unmarshal(raw, &jr); err != nil {
			return fmt.Errorf("poll request %s: %w", id, err)
		}
		if jr.Progress != nil {
			pr.report(*jr.Progress)
		}
		if jr.State != kvmodel.StatePending {
			pr.finish()
			return a.finish(resp.StatusCode, raw)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for request %s (it goes on; jobx request get %s %s): %w", id, wf, id, ctx.Err())
		case <-time.After(interval):
		}
		interval = min(interval*3/2, maxInterval)
	}
}

// finish prints a final gateway answer: the result pairs, or the error.
func (a *app) finish(status int, raw []byte) error {
	var jr jobResponse
	if err := json.Unmarshal(raw, &jr); err != nil {
		return fmt.Errorf("gateway answered %d with %q", status, strings.TrimSpace(string(raw)))
	}
	if jr.State == kvmodel.StateFailed {
		var f kvmodel.Failure
		json.Unmarshal(jr.Error, &f)
		if a.output == "json" {
			a.stdout.Write(raw)
		}
		printFailure(a.stderr, jr.RequestID, &f)
		return &exitError{1}
	}
	if status/100 != 2 || jr.Result == nil {
		var e struct{ Kind, Message string }
		if json.Unmarshal(jr.Error, &e) == nil && e.Message != "" {
			return fmt.Errorf("gateway: %s (%s, HTTP %d)", e.Message, e.Kind, status)
		}
		return fmt.Errorf("gateway answered %d with %q", status, strings.TrimSpace(string(raw)))
	}
	if a.output == "json" {
		_, err := a.stdout.Write(append(bytes.TrimSpace(raw), '\n'))
		return err
	}
	for _, p := range jr.Result.Pairs {
		var kv []json.RawMessage
		if err := json.Unmarshal(p, &kv); err != nil || len(kv) != 2 {
			return fmt.Errorf("result pair %s is not [key, value]", p)
		}
		fmt.Fprintf(a.stdout, "%s\t%s\n", rawText(kv[0]), rawText(kv[1]))
	}
	return nil
}

// printFailure prints a failed request's structured error.
func printFailure(w io.Writer, id string, f *kvmodel.Failure) {
	fmt.Fprintf(w, "request %s failed: %s\n", id, orDefault(string(f.Kind), "unknown"))
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-12s %s\n", k+":", v)
		}
	}
	line("message", f.Message)
	line("handler", f.Handler)
	if f.InvocationID != "" {
		line("invocation", strings.TrimSpace(fmt.Sprintf("%s (%s of step %s)", f.InvocationID, f.Direction, f.Step)))
	}
	if f.ExitCode != nil {
		line("exit status", fmt.Sprint(*f.ExitCode))
	}
	line("signal", f.Signal)
	if f.Attempts > 0 {
		line("attempts", fmt.Sprint(f.Attempts))
	}
	if tail := strings.TrimRight(f.StderrTail, "\n"); tail != "" {
		fmt.Fprintln(w, "  stderr tail:")
		for _, l := range strings.Split(tail, "\n") {
			fmt.Fprintln(w, "    "+l)
		}
	}
}

// progressReporter shows a polled request's progress: on a terminal, one
// bar redrawn in place; otherwise a plain line whenever the counts change.
type progressReporter struct {
	w        io.Writer
	id       string
	terminal bool
	start    time.Time
	last     gateway.Progress
	shown    bool
	done     bool
}

func newProgressReporter(w io.Writer, id string) *progressReporter {
	return &progressReporter{w: w, id: id, terminal: isTerminal(w), start: time.Now(), last: gateway.Progress{Done: -1}}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progressReporter) report(pg gateway.Progress) {
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s %d/%d invocations  %s", progressBar(pg.Done, pg.Known, 30), pg.Done, pg.Known,
			time.Since(p.start).Round(100*time.Millisecond))
		p.shown = true
	} else if pg != p.last {
		fmt.Fprintf(p.w, "request %s: %d/%d invocations done\n", p.id, pg.Done, pg.Known)
	}
	p.last = pg
}

// finish ends the bar's line; it is idempotent.
func (p *progressReporter) finish() {
	if p.shown && !p.done {
		fmt.Fprintln(p.w)
	}
	p.done = true
}

// progressBar draws done of known as width cells.
func progressBar(done, known, width int) string {
	filled := 0
	if known > 0 {
		filled = min(width, max(0, done*width/known))
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}
