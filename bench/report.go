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
// are null where there is no baseline; Target and MeetsTarget only where
// DESIGN sets a target.
type figure struct {
	Label       string   `json:"label"`
	Value       float64  `json:"value"`
	Unit        string   `json:"unit"`
	Baseline    *float64 `json:"baseline"`
	Ratio       *float64 `json:"ratio"`
	Target      string   `json:"target,omitempty"`
	MeetsTarget *bool    `json:"meets_target,omitempty"`
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

// target records a design target and whether the value meets it.
func (f *figure) target(desc string, met bool) *figure {
	f.Target, f.MeetsTarget = desc, &met
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
}

// results is the JSON document: the machine, the sizes and one entry per figure.
type results struct {
	Machine                  machine `json:"machine"`
	Sizes                    sizes   `json:"sizes"`
	TrivialP50               *figure `json:"trivial_p50"`
	TrivialP99               *figure `json:"trivial_p99"`
	TrivialMean              *figure `json:"trivial_mean"`
	WordcountWall            *figure `json:"wordcount_wall"`
	WordcountInvocations     *figure `json:"wordcount_invocations"`
	WordcountInvocationsPerS *figure `json:"wordcount_invocations_per_s"`
	WordcountDistinctWords   *figure `json:"wordcount_distinct_words"`
	WordcountPhases          *phases `json:"wordcount_phases"`
	CtrTrivialP50            *figure `json:"containerd_trivial_p50,omitempty"`
	CtrTrivialP99            *figure `json:"containerd_trivial_p99,omitempty"`
	CtrColdStart             *figure `json:"containerd_cold_start,omitempty"`
	PeakRSS                  *figure `json:"peak_rss_bench_process"`
	PeakRSSZygotes           *figure `json:"peak_rss_python_zygotes"`
	// WordcountMatchesBaseline is true when jobx's word counts equal the
	// baseline's (and Go's) exactly; a run where they differ fails.
	WordcountMatchesBaseline bool `json:"wordcount_matches_baseline"`
}

func (r *results) figures() []*figure {
	out := []*figure{r.TrivialP50, r.TrivialP99, r.TrivialMean, r.WordcountWall, r.WordcountInvocations,
		r.WordcountInvocationsPerS, r.WordcountDistinctWords}
	for _, f := range []*figure{r.CtrTrivialP50, r.CtrTrivialP99, r.CtrColdStart} {
		if f != nil {
			out = append(out, f)
		}
	}
	return append(out, r.PeakRSS, r.PeakRSSZygotes)
}

// writeTable prints the figures as an aligned plain-text table.
func (r *results) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tjobx\tbaseline\tratio\ttarget")
	for _, f := range r.figures() {
		base, ratio, target := "", "", ""
		if f.Baseline != nil {
			base = formatValue(*f.Baseline, f.Unit)
		}
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.1fx", *f.Ratio)
		}
		if f.MeetsTarget != nil {
			verdict := "met"
			if !*f.MeetsTarget {
				verdict = "MISSED"
			}
			target = f.Target + " " + verdict
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Label, formatValue(f.Value, f.Unit), base, ratio, target)
	}
	return tw.Flush()
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

// zygotes returns the pids of this process's Python zygotes (children
// running jobx_runtime.py in zygote mode).
func zygotes() []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte("jobx_runtime.py")) || !bytes.Contains(cmdline, []byte("\x00zygote\x00")) {
			continue
		}
		if parentOf(pid) == self {
			out = append(out, pid)
		}
	}
	return out
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
