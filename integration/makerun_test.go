package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
)

// TestMakeRunLinesWork starts `jobx up` with every example loaded, as
// `make run` does, on each sandbox this machine runs (namespace and none;
// containerd as root or under CI), and runs exactly the curl and jobx
// submit lines it prints, in a shell. Each answer is checked against what
// the job computes.
func TestMakeRunLinesWork(t *testing.T) {
	sandboxes := []string{"namespace", "none"}
	if testbox.SkipContainerd() == "" {
		sandboxes = append(sandboxes, "containerd")
	}
	examples, err := filepath.Glob("../examples/*/workflow.yaml")
	if err != nil || len(examples) < 3 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	for _, sb := range sandboxes {
		t.Run(sb, func(t *testing.T) {
			bin := jobxBinary(t)
			addrs := testenv.FreeAddrs(t, 3)
			args := []string{bin, "up", "--data-dir", t.TempDir(), "--http", addrs[0], "--etcd-listen", addrs[1], "--nsqd-listen", addrs[2], "--sandbox", sb}
			for _, e := range examples {
				args = append(args, "--load", filepath.Dir(e))
			}
			if sb == "containerd" {
				// Nothing answers at --containerd: jobx up starts its private one.
				args = append(args, "--containerd", filepath.Join(t.TempDir(), "none.sock"), "--images-dir", testbox.Images(t).Dir())
			}
			p := &upProc{t: t, args: args, url: "http://" + addrs[0]}
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("jobx up's output:\n%s", p.out)
				}
			})
			p.start()

			jobs := printedJobs(p.out.String())
			if len(jobs) < 5 {
				t.Fatalf("jobx up printed %d jobs' lines, want every example job:\n%s", len(jobs), p.out)
			}
			for _, j := range jobs {
				curl := runPrinted(t, j.curl, bin)
				var ans struct {
					Result struct {
						Pairs [][2]json.RawMessage `json:"pairs"`
					} `json:"result"`
					State string `json:"state"`
				}
				if err := json.Unmarshal([]byte(curl), &ans); err != nil || ans.State != "done" {
					t.Fatalf("%s: %s\nanswered: %s", j.name, j.curl, curl)
				}
				got := map[string]string{}
				for _, pr := range ans.Result.Pairs {
					got[printedValue(pr[0])] = printedValue(pr[1])
				}
				submit := map[string]string{}
				for _, line := range strings.Split(strings.TrimSpace(runPrinted(t, j.submit, bin)), "\n") {
					k, v, _ := strings.Cut(line, "\t")
					submit[k] = v
				}
				// Each line's answer on its own: the dev jobs are random.
				if err := checkExampleAnswer(j.name, got); err != nil {
					t.Errorf("%s: %v\n%s", j.name, err, j.curl)
				}
				if err := checkExampleAnswer(j.name, submit); err != nil {
					t.Errorf("%s: %v\n%s", j.name, err, j.submit)
				}
			}
		})
	}
}

// printedJob is one job's lines of jobx up's output.
type printedJob struct{ name, curl, submit string }

var jobLineRE = regexp.MustCompile(`^  job (\S+): `)

// printedJobs parses the job lines jobx up printed.
func printedJobs(out string) []printedJob {
	var jobs []printedJob
	for _, line := range strings.Split(out, "\n") {
		if m := jobLineRE.FindStringSubmatch(line); m != nil {
			jobs = append(jobs, printedJob{name: m[1]})
			continue
		}
		if len(jobs) == 0 {
			continue
		}
		j := &jobs[len(jobs)-1]
		switch s := strings.TrimSpace(line); {
		case strings.HasPrefix(s, "curl "):
			j.curl = s
		case strings.HasPrefix(s, "jobx submit "):
			j.submit = s
		}
	}
	return jobs
}

// runPrinted runs a printed line in sh, jobx being bin, and returns its
// standard output.
func runPrinted(t *testing.T, line, bin string) string {
	t.Helper()
	if line == "" {
		t.Fatal("a job's line is missing")
	}
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s: %v\n%s%s", line, err, out, stderr)
	}
	return string(out)
}

// printedValue renders a JSON value as jobx submit prints it: a string
// unquoted, anything else as compact JSON.
func printedValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var v any
	json.Unmarshal(raw, &v)
	b, _ := json.Marshal(v)
	return string(b)
}

func sorted(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// checkExampleAnswer checks an example job's answer to its example
// arguments (examples/*/workflow.yaml) against what the job computes.
func checkExampleAnswer(job string, got map[string]string) error {
	switch job {
	case "dev/job4", "dev/job5":
		arg := map[string]int{"dev/job4": 17413412, "dev/job5": 1000}[job]
		total := 0
		for k, v := range got {
			if n, err := strconv.Atoi(k); err != nil || n < 0 || n > 9 {
				return fmt.Errorf("key %s is not 0..9", k)
			}
			var x any
			if err := json.Unmarshal([]byte(v), &x); err != nil {
				return fmt.Errorf("value %s: %v", v, err)
			}
			switch x := x.(type) {
			case float64:
				total += int(x)
			case []any:
				for _, e := range x {
					f, _ := e.(float64)
					total += int(f)
				}
			}
		}
		if total != arg {
			return fmt.Errorf("the intervals add up to %d, not %d", total, arg)
		}
	case "languages/letters":
		return sameMap(got, map[string]string{"h": "1", "e": "1", "l": "3", "o": "2", "w": "1", "r": "1", "d": "1"})
	case "languages/squares":
		return sameMap(got, map[string]string{"squares": "25"})
	case "wordcount/wordcount":
		want := map[string]string{}
		files, _ := filepath.Glob("../examples/wordcount/files/texts/*.txt")
		counts := map[string]int{}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, w := range regexp.MustCompile(`[a-z']+`).FindAllString(strings.ToLower(string(b)), -1) {
				counts[strings.Trim(w, "'")]++
			}
		}
		for w, n := range counts {
			want[w] = strconv.Itoa(n)
		}
		if len(want) < 20 {
			return fmt.Errorf("the example's texts hold %d words", len(want))
		}
		return sameMap(got, want)
	default:
		return fmt.Errorf("no check for job %s: add one", job)
	}
	return nil
}

func sameMap(got, want map[string]string) error {
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
		return fmt.Errorf("got %v, want %v", sorted(got), sorted(want))
	}
	return nil
}
