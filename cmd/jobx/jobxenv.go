package main

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/sharedfs"
)

// JobX's environment variables (JOBX_SEMANTICS.md section 7). Those jobx
// has a setting for are honoured: loadEnv reads them, and jobxRunnerEnv
// below turns the runner ones into the defaults of the runner's flags (a
// flag given wins). The others, where jobx has no such concept, are
// refused when a daemon starts (jobx gateway, runner, up), with the jobx
// way: a JobX deployment moved over is never silently changed. docs/cli.md
// has the whole table.

// refusedVar is a JobX variable jobx refuses when set, unless its value is
// one of harmless (JobX's default, which is jobx's behaviour too).
type refusedVar struct {
	harmless []string
	way      string // what to do instead, in jobx
}

var refusedJobXVars = map[string]refusedVar{
	"MR_NSQ_MAX_IN_FLIGHT":                      {nil, "use jobx runner --concurrency N: N handler runs at once, 2N messages in flight"},
	"MR_USE_FAKE_QUEUE":                         {[]string{"0"}, "there is no fake queue: jobx up runs an in-process nsqd"},
	"MR_FAKE_QUEUE_SPOOL_PATH":                  {nil, "there is no fake queue: jobx up runs an in-process nsqd"},
	"MR_FAKE_QUEUE_SPOOL_WRITE":                 {nil, "there is no fake queue: jobx up runs an in-process nsqd"},
	"MR_HANDLER_UPDATE_CHECK_INTERVAL_S":        {nil, "runners watch etcd, so a handler update applies at once; nothing to set"},
	"MR_DO_CLEANUP_REQUESTS":                    {[]string{"1"}, "jobx always cleans up; keep a request with keep=true (jobx submit --keep), or lengthen jobx runner --retention and jobx gateway --delivered-retention"},
	"MR_CLEANUP_MANDATORY_QUIET_PERIOD_S":       {nil, "the cleanup queue is durable in etcd; set jobx runner --retention and jobx gateway --delivered-retention"},
	"MR_REMOTE_ADDR_HEADER":                     {nil, "jobx gateway records the client address as the connection gives it (requester_ip); put the gateway behind a proxy that connects from the client's network, or leave it unset"},
	"MR_RESULT_EMAIL_WRITER_TEXT_BODY_TEMPLATE": {nil, "jobx's email writer attaches the result to a fixed body; set the subject with MR_RESULT_EMAIL_WRITER_SUBJECT_TEMPLATE or a job's writer subject"},
	"MR_DO_STREAM_LOG":                          {[]string{"1"}, "jobx logs to stderr always; --log-level error quiets it"},
	"MR_LOG_FILEPATH":                           {nil, "jobx logs to stderr; redirect it (or let systemd or docker keep it), --log-format json for a collector"},
	"MR_HANDLER_DEBUG":                          {[]string{"0"}, "a handler's log lines go to the runner's log at their own level; --log-level debug shows the debug ones"},
	"MR_HANDLER_LOG_LEVEL":                      {nil, "a handler's log lines go to the runner's log at their own level; choose with jobx runner --log-level"},
	"MR_LOG_EMAIL_HOOK":                         {[]string{"0"}, "notifications are a workflow's notify: settings (email or http; docs/notifications.md), with the runners' --smtp-addr"},
	"MR_LOG_HTTP_HOOK":                          {[]string{"0"}, "notifications are a workflow's notify: settings (email or http; docs/notifications.md)"},
	"MR_KV_CACHE":                               {[]string{"0"}, "jobx keeps definitions in a watched in-memory catalog; nothing to set"},
	"MR_CACHE_TYPE":                             {nil, "jobx uses no Redis cache; nothing to set"},
	"MR_CACHE_REDIS_HOST":                       {nil, "jobx uses no Redis cache; nothing to set"},
	"MR_CACHE_REDIS_PORT":                       {nil, "jobx uses no Redis cache; nothing to set"},
}

func init() {
	// The log hooks' settings, read by JobX only with their hook on.
	notify := "notifications are a workflow's notify: settings (email or http; docs/notifications.md); SMTP is the runners' --smtp-addr, --smtp-from, --smtp-user"
	for _, name := range []string{"MR_LOG_EMAIL_HOSTNAME", "MR_LOG_EMAIL_HOST_PORT", "MR_LOG_EMAIL_FROM", "MR_LOG_EMAIL_TO",
		"MR_LOG_EMAIL_SUBJECT", "MR_LOG_EMAIL_USERNAME", "MR_LOG_EMAIL_PASSWORD", "MR_LOG_EMAIL_SECURE_KEY_FILEPATH",
		"MR_LOG_EMAIL_SECURE_CERTIFICATE_FILEPATH", "MR_HANDLER_EMAIL_LOG_LEVEL", "MR_LOG_HTTP_HOSTNAME", "MR_LOG_HTTP_PORT",
		"MR_LOG_HTTP_PATH", "MR_LOG_HTTP_VERB", "MR_HANDLER_HTTP_LOG_LEVEL"} {
		refusedJobXVars[name] = refusedVar{nil, notify}
	}
	for _, name := range []string{"DUI_EMAIL_MR_RESULT_SINK_TO_FILE", "DUI_EMAIL_SINK_TO_FILE"} {
		refusedJobXVars[name] = refusedVar{[]string{"0"}, "test the email writer against a real SMTP server (jobx runner --smtp-addr)"}
	}
}

// jobxEnvErr returns an error naming every refused JobX variable set in
// the environment (read through getenv), with what to do instead; consume
// says whether the daemon runs handlers, for MR_CONSUME.
func jobxEnvErr(getenv func(string) string, consume bool) error {
	var bad []string
	for name, r := range refusedJobXVars {
		if v := getenv(name); v != "" && !slices.Contains(r.harmless, v) {
			bad = append(bad, fmt.Sprintf("%s=%s: %s", name, v, r.way))
		}
	}
	if getenv("MR_CONSUME") == "0" && consume {
		bad = append(bad, "MR_CONSUME=0: this process runs handlers; run jobx gateway alone for a front end that does not (or jobx up --runners 0)")
	}
	if v := getenv("MR_FS_FACTORY_FQ_CLASS"); v != "" && !strings.Contains(strings.ToLower(v), "tahoe") {
		bad = append(bad, fmt.Sprintf("MR_FS_FACTORY_FQ_CLASS=%s: jobx's shared filesystems are local (jobx runner --fs-dir) or Tahoe-LAFS (MR_FS_TAHOE_DIR_URI and MR_FS_TAHOE_WEBAPI_URL_PREFIX, or --fs-config-dir); docs/sharedfs.md", v))
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("JobX settings jobx does not take; unset them:\n  %s", strings.Join(bad, "\n  "))
}

// jobxWriterClasses maps JobX's result writer classes to jobx's writers.
var jobxWriterClasses = map[string]string{
	"mr.result_writers.inline.InlineResultWriter": writers.Inline,
	"mr.result_writers.file.FileResultWriter":     writers.File,
	"mr.result_writers.email.EmailResultWriter":   writers.Email,
	"mr.result_writers.http.HttpResultWriter":     writers.HTTP,
}

// jobxRunner is what JobX's variables set of a runner: the defaults of
// its flags.
type jobxRunner struct {
	writer      kvmodel.WriterConfig
	smtpAddr    string
	smtpFrom    string
	fs          sharedfs.Config // zero: none given
	concurrency int             // 0: not set
	err         error           // a variable with a value jobx cannot take
}

// jobxRunnerEnv reads the runner settings of JobX's variables.
func jobxRunnerEnv(getenv func(string) string) jobxRunner {
	var r jobxRunner
	var errs []error
	if class := getenv("MR_RESULT_WRITER_FQ_CLASS"); class != "" {
		kind, ok := jobxWriterClasses[class]
		if !ok {
			errs = append(errs, fmt.Errorf("MR_RESULT_WRITER_FQ_CLASS=%s: jobx's result writers are %s (jobx runner --result-writer)", class, strings.Join(slices.Sorted(maps.Keys(jobxWriterClasses)), ", ")))
		}
		r.writer.Kind = kind
	}
	r.writer.Path = getenv("MR_RESULT_FILE_WRITER_OUTPUT_PATH")
	switch v := getenv("MR_RESULT_FILE_WRITER_WRITE_AS_DIRECTORY"); v {
	case "", "0":
	case "1":
		r.writer.AsDirectory = true
	default:
		errs = append(errs, fmt.Errorf("MR_RESULT_FILE_WRITER_WRITE_AS_DIRECTORY=%s: want 0 or 1", v))
	}
	r.writer.To = splitList(getenv("MR_RESULT_EMAIL_WRITER_TO_LIST"))
	r.writer.Subject = getenv("MR_RESULT_EMAIL_WRITER_SUBJECT_TEMPLATE")
	r.writer.URL = getenv("MR_RESULT_HTTP_WRITER_SERVER_URL")
	if h := getenv("MR_EMAIL_SMTP_HOSTNAME"); h != "" {
		r.smtpAddr = h
		if _, _, err := net.SplitHostPort(h); err != nil {
			r.smtpAddr = net.JoinHostPort(h, "25")
		}
	}
	r.smtpFrom = getenv("MR_EMAIL_SMTP_FROM_EMAIL")
	dircap, webapi := getenv("MR_FS_TAHOE_DIR_URI"), getenv("MR_FS_TAHOE_WEBAPI_URL_PREFIX")
	switch {
	case dircap != "" && webapi != "":
		r.fs = sharedfs.Config{Backend: sharedfs.BackendTahoe, Gateway: strings.TrimRight(webapi, "/"), Dircap: dircap}
		if err := r.fs.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("MR_FS_TAHOE_DIR_URI, MR_FS_TAHOE_WEBAPI_URL_PREFIX: %w", err))
		}
	case dircap != "" || webapi != "":
		errs = append(errs, errors.New("MR_FS_TAHOE_DIR_URI and MR_FS_TAHOE_WEBAPI_URL_PREFIX go together: give both (or jobx runner --fs-config-dir)"))
	}
	switch v := getenv("MR_MULTITHREADED"); v {
	case "", "1":
	case "0":
		r.concurrency = 1
	default:
		errs = append(errs, fmt.Errorf("MR_MULTITHREADED=%s: want 0 or 1", v))
	}
	r.err = errors.Join(errs...)
	return r
}
