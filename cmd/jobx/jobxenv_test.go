package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/cobra"
)

// A JobX variable jobx has no such concept for stops a daemon at start,
// with the jobx way; JobX's default values of them pass.
func TestDaemonsRefuseJobXSettingsTheyDoNotTake(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want []string
	}{
		{map[string]string{"MR_NSQ_MAX_IN_FLIGHT": "20000"}, []string{"runner"}, []string{"MR_NSQ_MAX_IN_FLIGHT=20000: use jobx runner --concurrency N"}},
		{map[string]string{"MR_HANDLER_UPDATE_CHECK_INTERVAL_S": "10", "MR_LOG_EMAIL_TO": "ops@example.com"}, []string{"gateway"},
			[]string{"MR_HANDLER_UPDATE_CHECK_INTERVAL_S=10: runners watch etcd", "MR_LOG_EMAIL_TO=ops@example.com: notifications are a workflow's notify: settings"}},
		{map[string]string{"MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS": "noscope"}, []string{"runner"}, []string{`scope factory class "noscope": want a dotted path`}},
		{map[string]string{"MR_DO_CLEANUP_REQUESTS": "0"}, []string{"up"}, []string{"keep a request with keep=true"}},
		{map[string]string{"MR_CONSUME": "0"}, []string{"runner"}, []string{"MR_CONSUME=0: this process runs handlers"}},
		{map[string]string{"MR_FS_FACTORY_FQ_CLASS": "mine.S3Factory"}, []string{"runner"}, []string{"jobx's shared filesystems are local"}},
		{map[string]string{"MR_RESULT_WRITER_FQ_CLASS": "mine.S3Writer"}, []string{"runner"}, []string{"MR_RESULT_WRITER_FQ_CLASS=mine.S3Writer: jobx's result writers are mr.result_writers.email.EmailResultWriter"}},
		{map[string]string{"MR_FS_TAHOE_DIR_URI": "URI:DIR2:x:y"}, []string{"runner"}, []string{"go together: give both"}},
	} {
		r := runEnv(t, tc.env, tc.args...)
		if r.code == 0 {
			t.Errorf("jobx %v with %v started", tc.args, tc.env)
			continue
		}
		mustContain(t, strings.Join(tc.args, " "), r.stderr, tc.want...)
	}
}

// runEnv runs jobx with env as its whole environment (etcd unreachable:
// the commands must fail before they need it, or for the reason asked).
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	c := &cli{t: t, env: env}
	if _, ok := env["JOBX_ETCD"]; !ok {
		env["JOBX_ETCD"] = "127.0.0.1:1"
	}
	return c.run("", args...)
}

// JobX's variables jobx has settings for become the defaults of the
// runner's flags, and DEBUG the log level; JobX's defaults pass.
func TestJobXSettingsBecomeTheRunnersDefaults(t *testing.T) {
	env := map[string]string{
		"MR_RESULT_WRITER_FQ_CLASS":                "mr.result_writers.email.EmailResultWriter",
		"MR_RESULT_EMAIL_WRITER_TO_LIST":           "a@example.com,b@example.com",
		"MR_RESULT_EMAIL_WRITER_SUBJECT_TEMPLATE":  "done: %(request_id)s",
		"MR_RESULT_FILE_WRITER_OUTPUT_PATH":        "/srv/results",
		"MR_RESULT_FILE_WRITER_WRITE_AS_DIRECTORY": "1",
		"MR_RESULT_HTTP_WRITER_SERVER_URL":         "http://127.0.0.1:9/results",
		"MR_EMAIL_SMTP_HOSTNAME":                   "mail.example.com",
		"MR_EMAIL_SMTP_FROM_EMAIL":                 "jobx@example.com",
		"MR_FS_TAHOE_DIR_URI":                      "URI:DIR2:abc:def",
		"MR_FS_TAHOE_WEBAPI_URL_PREFIX":            "http://127.0.0.1:3456/",
		"MR_MULTITHREADED":                         "0",
		"MR_USE_FAKE_QUEUE":                        "0",
		"MR_DO_CLEANUP_REQUESTS":                   "1",
		"DEBUG":                                    "1",
	}
	a := &app{env: loadEnv(func(k string) string { return env[k] }), getenv: func(k string) string { return env[k] }}
	rf := a.addRunnerFlags(&cobra.Command{}, true)
	if err := rf.validate(); err != nil {
		t.Fatal(err)
	}
	o := rf.opts
	w := o.Writer
	if w.Kind != "email" || !slices.Equal(w.To, []string{"a@example.com", "b@example.com"}) || w.Subject != "done: %(request_id)s" ||
		w.Path != "/srv/results" || !w.AsDirectory || w.URL != "http://127.0.0.1:9/results" {
		t.Errorf("writer %+v", w)
	}
	if o.SMTPAddr != "mail.example.com:25" || o.SMTPFrom != "jobx@example.com" {
		t.Errorf("smtp %q from %q", o.SMTPAddr, o.SMTPFrom)
	}
	if o.FS != (sharedfs.Config{Backend: sharedfs.BackendTahoe, Gateway: "http://127.0.0.1:3456", Dircap: "URI:DIR2:abc:def"}) {
		t.Errorf("fs %+v", o.FS)
	}
	if o.Concurrency != 1 {
		t.Errorf("MR_MULTITHREADED=0: concurrency %d, want 1", o.Concurrency)
	}
	if a.env.LogLevel != "debug" {
		t.Errorf("DEBUG=1: log level %q", a.env.LogLevel)
	}
	if err := jobxEnvErr(func(k string) string { return env[k] }, true); err != nil {
		t.Errorf("honoured settings refused: %v", err)
	}
	// A flag given wins over the variable.
	cmd := &cobra.Command{}
	rf = a.addRunnerFlags(cmd, true)
	if err := cmd.Flags().Parse([]string{"--result-writer", "file", "--concurrency", "3"}); err != nil {
		t.Fatal(err)
	}
	if rf.opts.Writer.Kind != "file" || rf.opts.Concurrency != 3 {
		t.Errorf("flags lost to the environment: %+v, concurrency %d", rf.opts.Writer, rf.opts.Concurrency)
	}
}

// MR_CONSUME=0 makes jobx up a front end without runners, as JobX's web
// process was.
func TestMRConsumeZeroMeansNoRunnersInUp(t *testing.T) {
	a := &app{getenv: func(k string) string { return map[string]string{"MR_CONSUME": "0"}[k] }}
	a.env = loadEnv(a.getenv)
	cmd := a.upCmd()
	if f := cmd.Flags().Lookup("runners"); f == nil || f.DefValue != "0" {
		t.Fatalf("jobx up --runners default with MR_CONSUME=0: %v", f)
	}
}
