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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/smtp"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
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
	Created      float64        `json:"created"` // Unix seconds, as JobX's LogRecord
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
	SMTPAddr, SMTPFrom string
	Client             *http.Client
	Log                *slog.Logger
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
		if err := s.mail(cfg.Email, e); err != nil {
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

func (s *Sender) post(ctx context.Context, url string, e Event) error {
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	body, _ := json.Marshal(e)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if resp, err = client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("POST %s: %s", url, resp.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("notify %s: %w", url, err)
}

func (s *Sender) mail(to []string, e Event) error {
	if s.SMTPAddr == "" || s.SMTPFrom == "" {
		return errors.New("email notification: no SMTP server configured (runner --smtp-addr and --smtp-from)")
	}
	msg := fmt.Sprintf("From: JobX <%s>\r\nTo: %s\r\nSubject: JobX Notification: %s (%s)\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s  %s  %s\r\n\r\nworkflow: %s\r\nrequest: %s\r\ninvocation: %s\r\nhandler: %s\r\n",
		s.SMTPFrom, strings.Join(to, ", "), e.Kind, e.Workflow, e.Time.UTC().Format(time.RFC1123Z),
		e.Time.UTC().Format("2006-01-02 15:04:05"), e.Level, e.Message, e.Workflow, e.RequestID, e.InvocationID, e.Handler)
	if err := smtp.SendMail(s.SMTPAddr, nil, s.SMTPFrom, to, []byte(msg)); err != nil {
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
