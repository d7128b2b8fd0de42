// Package notifications tells people what happened to a workflow: request
// failures, request completions (opt-in), handler updates and NOTIFY calls
// from handlers, over the workflow's HTTP and email channels. With no
// channel configured an event is only logged, never an error (JobX's NOTIFY
// raised NameError then).
package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
)

// Event kinds.
const (
	RequestFailed   = "request_failed"
	RequestDone     = "request_done"
	HandlersUpdated = "handlers_updated"
	Handler         = "handler" // NOTIFY from a handler
)

// Event is one notification.
type Event struct {
	Time         time.Time      `json:"-"`
	Created      float64        `json:"created"`        // Unix seconds, as JobX's LogRecord
	Timestamp    string         `json:"time,omitempty"` // Time in RFC 3339 (UTC), set by Send
	Workflow     string         `json:"workflow"`
	Kind         string         `json:"kind"`
	Level        string         `json:"levelname"` // INFO, WARNING, ERROR, ...
	Name         string         `json:"name"`      // e.g. MR_HANDLER.<handler> or jobx.request
	Message      string         `json:"msg"`
	RequestID    string         `json:"request_id,omitempty"`
	InvocationID string         `json:"invocation_id,omitempty"`
	Handler      string         `json:"handler,omitempty"`
	Fields       map[string]any `json:"fields,omitempty"`
}

// Sender delivers events. It is safe for concurrent use.
type Sender struct {
	SMTP   writers.Server // SMTP settings (the runner's, shared with the email result writer)
	Client *http.Client   // HTTP channel client (default: 10s timeout)
	Log    *slog.Logger
}

// Validate checks a workflow's notification config, naming the bad field.
func Validate(cfg *kvmodel.NotifyConfig) error {
	if cfg == nil {
		return nil
	}
	if cfg.HTTP != "" {
		if u, err := url.Parse(cfg.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("notifications.http %q must be an http:// or https:// URL", cfg.HTTP)
		}
	}
	for _, a := range cfg.Email {
		if err := writers.ValidateAddress(a); err != nil {
			return fmt.Errorf("notifications.email: %w", err)
		}
	}
	return nil
}

// wanted applies the config's filters.
func wanted(cfg *kvmodel.NotifyConfig, kind string) bool {
	switch kind {
	case RequestFailed:
		return cfg.OnFailure == nil || *cfg.OnFailure
	case RequestDone:
		return cfg.OnCompletion
	case HandlersUpdated:
		return cfg.OnHandlerUpdate == nil || *cfg.OnHandlerUpdate
	}
	return true
}

// Send logs e and delivers it to every channel of cfg that wants it. It
// returns an error only when every configured channel failed.
func (s *Sender) Send(ctx context.Context, cfg *kvmodel.NotifyConfig, e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Created = float64(e.Time.UnixNano()) / 1e9
	e.Timestamp = e.Time.UTC().Format(time.RFC3339Nano)
	if e.Level == "" {
		e.Level = "INFO"
	}
	e.Level = strings.ToUpper(e.Level)
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	level := slog.LevelInfo
	switch e.Level {
	case "WARNING", "WARN":
		level = slog.LevelWarn
	case "ERROR", "EXCEPTION", "CRITICAL":
		level = slog.LevelError
	}
	log.Log(ctx, level, "notification: "+e.Message, "workflow", e.Workflow, "kind", e.Kind, "request_id", e.RequestID, "handler", e.Handler)
	if cfg == nil || !wanted(cfg, e.Kind) || (cfg.HTTP == "" && len(cfg.Email) == 0) {
		return nil
	}
	var errs error
	channels := 0
	if cfg.HTTP != "" {
		channels++
		if err := s.post(ctx, cfg.HTTP, e); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if len(cfg.Email) > 0 {
		channels++
		if err := s.mail(ctx, cfg.Email, e); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if errs != nil {
		log.Warn("notification not delivered", "workflow", e.Workflow, "err", errs)
		if me, ok := errs.(*multierror.Error); ok && len(me.Errors) == channels {
			return errs
		}
	}
	return nil
}

// post POSTs e as JSON, retrying once after 200ms.
func (s *Sender) post(ctx context.Context, url string, e Event) error {
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	body, _ := json.Marshal(e)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("notify %s: %w (%v)", url, ctx.Err(), err)
			case <-time.After(200 * time.Millisecond):
			}
		}
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("notify %s: %w", url, err)
		}
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if resp, err = client.Do(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("POST %s: %s", url, resp.Status)
		}
	}
	return fmt.Errorf("notify %s: %w", url, err)
}

// mail sends e as a plain-text mail, subject "JobX Notification: <kind>
// (<workflow>)" (JobX's MR_LOG_EMAIL_SUBJECT default, then the event).
func (s *Sender) mail(ctx context.Context, to []string, e Event) error {
	var msg bytes.Buffer
	msg.Write(writers.Header("JobX", s.SMTP.SMTPFrom, to, fmt.Sprintf("JobX Notification: %s (%s)", e.Kind, e.Workflow), e.RequestID))
	msg.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	msg.Write(writers.QuotedPrintable(fmt.Sprintf("%s  %s  %s\n\nworkflow: %s\nkind: %s\nname: %s\nrequest: %s\ninvocation: %s\nhandler: %s\n",
		e.Time.UTC().Format("2006-01-02 15:04:05"), e.Level, e.Message, e.Workflow, e.Kind, e.Name, e.RequestID, e.InvocationID, e.Handler)))
	if err := writers.SendMail(ctx, s.SMTP, to, msg.Bytes()); err != nil {
		return fmt.Errorf("email notification to %s: %w", strings.Join(to, ","), err)
	}
	return nil
}

// NotifyPrefix starts the stderr lines in which handlers ask to notify.
const NotifyPrefix = "JOBX-NOTIFY "

// ParseHandlerLine decodes a handler's "JOBX-NOTIFY {json}" stderr line.
func ParseHandlerLine(line string) (Event, bool) {
	rest, ok := strings.CutPrefix(line, NotifyPrefix)
	if !ok {
		return Event{}, false
	}
	var rec struct {
		Level, Message, Handler, Workflow, Traceback string
		RequestID                                    string `json:"request_id"`
		InvocationID                                 string `json:"invocation_id"`
	}
	if json.Unmarshal([]byte(rest), &rec) != nil {
		return Event{}, false
	}
	e := Event{Kind: Handler, Level: rec.Level, Message: rec.Message, Handler: rec.Handler, Workflow: rec.Workflow,
		RequestID: rec.RequestID, InvocationID: rec.InvocationID, Name: "MR_HANDLER." + rec.Handler}
	if rec.Traceback != "" {
		e.Message += "\n" + rec.Traceback
	}
	return e, true
}
