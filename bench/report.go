package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// figure is one reported measurement. Baseline and Ratio (Value/Baseline)
// are null where there is no baseline; Celery and CeleryRatio
// (Value/Celery), Dask and DaskRatio (Value/Dask) where that peer did not
// run the same work; Target,
// MeetsTarget and MissedBy only where the project sets a target.
type figure struct {
	Label       string   `json:"label"`
	Value       float64  `json:"value"`
	Unit        string   `json:"unit"`
	Baseline    *float64 `json:"baseline"`
	Ratio       *float64 `json:"ratio"`
	Celery      *float64 `json:"celery,omitempty"`
	CeleryRatio *float64 `json:"ratio_to_celery,omitempty"`
	Dask        *float64 `json:"dask,omitempty"`
	DaskRatio   *float64 `json:"ratio_to_dask,omitempty"`
	Target      string   `json:"target,omitempty"`
	MeetsTarget *bool    `json:"meets_target,omitempty"`
	// MissedBy is how far a missed target is, as a factor above 1 (the
	// value over the limit for an upper bound, the limit over the value
	// for a lower bound).
	MissedBy *float64 `json:"missed_by,omitempty"`
}

func newFigure(label string, value float64, unit string) *figure {
	return &figure{Label: label, Value: value, Unit: unit}
}

// vs sets the baseline and the ratio.
func (f *figure) vs(baseline float64) *figure {
	f.Baseline = &baseline
	if baseline > 0 {
		r := f.Value / baseline
		f.Ratio = &r
	}
	return f
}

// vsPeer sets peer p's figure v and the ratio to it.
func (f *figure) vsPeer(p *peerResult, v float64) *figure {
	var r *float64
	if v > 0 {
		x := f.Value / v
		r = &x
	}
	switch p.Name {
	case "Celery":
		f.Celery, f.CeleryRatio = &v, r
	case "Dask":
		f.Dask, f.DaskRatio = &v, r
	default:
		panic("bench: no column for peer " + p.Name)
	}
	return f
}

// atMost records the target value <= limit.
func (f *figure) atMost(desc string, limit float64) *figure {
	return f.target(desc, f.Value <= limit, f.Value/limit)
}

// atLeast records the target value >= limit.
func (f *figure) atLeast(desc string, limit float64) *figure {
	return f.target(desc, f.Value >= limit, limit/f.Value)
}

// target records a target, whether the value meets it and, if not, by
// what factor it misses.
func (f *figure) target(desc string, met bool, factor float64) *figure {
	f.Target, f.MeetsTarget = desc, &met
	if !met {
		f.MissedBy = &factor
	}
	return f
}

// machine describes where the run happened.
type machine struct {
	NProc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	GoVersion  string `json:"go_version"`
	Python     string `json:"python_version"`
	Kernel     string `json:"kernel"`
	Date       string `json:"date"`
	// LoadStart and LoadEnd are the 1-minute load averages when the run
	// started and ended: other work on the machine shows in them.
	LoadStart float64 `json:"load_1m_at_start"`
	LoadEnd   float64 `json:"load_1m_at_end"`
}

// sizes are the run's parameters.
type sizes struct {
	Mode             string `json:"mode"`
	TrivialWarmup    int    `json:"trivial_warmup"`
	TrivialRequests  int    `json:"trivial_requests"`
	Docs             int    `json:"docs"`
	DocBytes         int    `json:"doc_bytes"`
	Vocabulary       int    `json:"vocabulary"`
	Seed             uint64 `json:"seed"`
	WordcountBody    int    `json:"wordcount_body_bytes"`
	BaselineWCRuns   int    `json:"baseline_wordcount_runs"`
	EtcdFsync        bool   `json:"etcd_fsync"`
	Sandbox          string `json:"sandbox"`
	RunnerConcurency int    `json:"runner_concurrency"`
	ScaleSizes       []int  `json:"scale_sizes"`
}

// results is the JSON document: the machine, the sizes and one entry per figure.
type results struct {
	Machine                  machine `json:"machine"`
	Sizes                    sizes   `json:"sizes"`
	TrivialP50               *figure `json:"trivial_p50"`
	TrivialP99               *figure `json:"trivial_p99"`
	TrivialMean              *figure `json:"trivial_mean"`
	TrivialForkP50           *figure `json:"trivial_fork_p50"`
	TrivialForkP99           *figure `json:"trivial_fork_p99"`
	WordcountWall            *figure `json:"wordcount_wall"`
	WordcountInvocations     *figure `json:"wordcount_invocations"`
	WordcountInvocationsPerS *figure `json:"wordcount_invocations_per_s"`
	WordcountDocsPerS        *figure `json:"wordcount_docs_per_s"`
	WordcountDistinctWords   *figure `json:"wordcount_distinct_words"`
	WordcountPhases          *phases `json:"wordcount_phases"`
	PeakRSS                  *figure `json:"peak_rss_bench_process"`
	PeakRSSZygotes           *figure `json:"peak_rss_python_zygotes"`
	// Sandboxes are the sandboxes side by side.
	Sandboxes *sandboxFigures `json:"sandboxes,omitempty"`
	// Celery and Dask are the peers' runs; CelerySkipped and DaskSkipped
	// say why one did not run.
	Celery        *peerResult `json:"celery,omitempty"`
	CelerySkipped string      `json:"celery_skipped,omitempty"`
	Dask          *peerResult `json:"dask,omitempty"`
	DaskSkipped   string      `json:"dask_skipped,omitempty"`
	// Small is the small-requests scenario (the peers' levels are theirs).
	Small   *smallRequests `json:"small_requests,omitempty"`
	Scaling *scaling       `json:"scaling,omitempty"`
	// WordcountMatchesBaseline is true when jobx's word counts equal the
	// baseline's (and Go's) exactly; a run where they differ fails.
	WordcountMatchesBaseline bool `json:"wordcount_matches_baseline"`
}

func (r *results) figures() []*figure {
	out := []*figure{r.TrivialP50, r.TrivialP99, r.TrivialMean, r.TrivialForkP50, r.TrivialForkP99, r.WordcountWall, r.WordcountInvocations,
		r.WordcountInvocationsPerS, r.WordcountDocsPerS, r.WordcountDistinctWords, r.PeakRSS, r.PeakRSSZygotes}
	if s := r.Scaling; s != nil {
		for _, run := range s.Runs {
			out = append(out, run.Wall, run.PerInvocation)
		}
		out = append(out, s.CostGrowth)
		for _, run := range s.Runs {
			out = append(out, run.RSSGateway, run.RSSRunner, run.RSSZygotes)
		}
	}
	return out
}

// writeNotes prints what the table's columns hold beyond the figures.
func (r *results) writeNotes(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d cores (%s), Go %s, Python %s, kernel %s, %s; load average %.1f at the start, %.1f at the end.\n",
		m.NProc, m.CPUModel, m.GoVersion, m.Python, m.Kernel, m.Date, m.LoadStart, m.LoadEnd)
	fmt.Fprintln(w, "baseline: the same Python handlers in one Python process (bench/baseline.py), same run.")
	for _, p := range []struct {
		r       *peerResult
		name    string
		skipped string
	}{{r.Celery, "Celery", r.CelerySkipped}, {r.Dask, "Dask", r.DaskSkipped}} {
		if p.r == nil {
			if p.skipped != "" {
				fmt.Fprintf(w, "%s: skipped: %s\n", p.name, p.skipped)
			}
			continue
		}
		p.r.writeNotes(w)
	}
	if r.Small != nil {
		fmt.Fprintf(w, "small requests: %d warm-up requests per client, then %d measured blocking trivial requests, at each number of clients; jobx's: %s, from the bench process over one HTTP client.\n",
			r.Small.Spec.Warmup, r.Small.Spec.Requests, r.Small.Job)
	}
	if r.Scaling != nil {
		fmt.Fprintln(w, "scaling:", r.Scaling.Cluster+"; peak RSS is VmHWM, reset before each size's run.")
	}
}

// writeTable prints the figures as an aligned plain-text table.
func (r *results) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tjobx\tbaseline\tjobx/baseline\tCelery\tjobx/Celery\tDask\tjobx/Dask\ttarget")
	ratio := func(r *float64) string {
		if r == nil {
			return ""
		}
		return formatRatio(*r)
	}
	for _, f := range r.figures() {
		base, celery, dask, target := "", "", "", ""
		if f.Baseline != nil {
			base = formatValue(*f.Baseline, f.Unit)
		}
		if f.Celery != nil {
			celery = formatValue(*f.Celery, f.Unit)
		}
		if f.Dask != nil {
			dask = formatValue(*f.Dask, f.Unit)
		}
		if f.MeetsTarget != nil {
			target = f.Target + ": met"
			if f.MissedBy != nil {
				target = fmt.Sprintf("%s: MISSED by %.2fx", f.Target, *f.MissedBy)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Label, formatValue(f.Value, f.Unit), base, ratio(f.Ratio),
			celery, ratio(f.CeleryRatio), dask, ratio(f.DaskRatio), target)
	}
	return tw.Flush()
}

func formatRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2fx", r)
	default:
		return fmt.Sprintf("%.2gx", r)
	}
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "ms":
		if v < 1 {
			return fmt.Sprintf("%.3g ms", v)
		}
		return fmt.Sprintf("%.2f ms", v)
	case "s":
		if v < 1 {
			return fmt.Sprintf("%.3g s", v)
		}
		return fmt.Sprintf("%.2f s", v)
	case "MiB":
		return fmt.Sprintf("%.0f MiB", v)
	case "1/s":
		return fmt.Sprintf("%.0f /s", v)
	case "x":
		return fmt.Sprintf("%.2fx", v)
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// writeJSON writes the results to path, creating its directory.
func (r *results) writeJSON(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func describeMachine() machine {
	m := machine{
		NProc: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		Date: time.Now().UTC().Format(time.RFC3339),
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := exec.Command("python3", "--version").CombinedOutput(); err == nil {
		m.Python = strings.TrimSpace(strings.TrimPrefix(string(out), "Python "))
	}
	return m
}

// loadAverage is the machine's 1-minute load average, or 0.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// peakRSS returns a process's VmHWM in bytes (pid 0: this process).
func peakRSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	return statusField(path, "VmHWM")
}

func statusField(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: odd %s line %q", path, field, sc.Text())
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		return n << 10, err
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// zygotes returns the pids of the Python zygotes (processes running
// jobx_runtime.py in zygote mode) that descend from process parent: its
// children for the none sandbox, under bubblewrap and the agent for the
// namespace sandbox.
func zygotes(parent int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A zygote's children (pre-forked, kept, running) keep its
		// command line: a zygote is one whose parent is not a zygote.
		if !isZygote(pid) || isZygote(parentOf(pid)) {
			continue
		}
		for p := parentOf(pid); p > 1; p = parentOf(p) {
			if p == parent {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// isZygote says whether process pid runs `<python> .../jobx_runtime.py
// zygote ...` (not the agent, whose command line names that command).
func isZygote(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := bytes.Split(cmdline, []byte{0})
	return len(argv) > 2 && bytes.HasSuffix(argv[1], []byte("jobx_runtime.py")) && string(argv[2]) == "zygote"
}

func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
