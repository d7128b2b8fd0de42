package integration

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"go.uber.org/goleak"
)

// TestMain runs the tests, writes the fault report and, when they passed,
// fails if any goroutine outlives them (goleak), as the runner and gateway
// packages' own tests do.
func TestMain(m *testing.M) {
	testenv.RunDaemonIfAsked() // a testenv.Proc child runs its daemon here
	code := m.Run()
	if err := writeFaultReport(); err != nil {
		fmt.Fprintln(os.Stderr, "fault report:", err)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// faultRow is what one fault test injected and what became of the requests
// that ran through it.
type faultRow struct {
	Fault     string
	Injected  int
	Requests  int
	Completed int // ended with the right result
	Failed    int // ended with a clear error (allowed only where the test says)
	Lost      int // results missing a leaf, or requests that never ended
	Dup       int // results holding a leaf more than once
}

var faultRows struct {
	sync.Mutex
	rows []faultRow
	load []string
	soak []string
}

func recordFault(r faultRow) {
	faultRows.Lock()
	defer faultRows.Unlock()
	faultRows.rows = append(faultRows.rows, r)
}

func recordLoad(line string) {
	faultRows.Lock()
	defer faultRows.Unlock()
	faultRows.load = append(faultRows.load, line)
}

// recordSoak adds a line to the soak test's part of the report.
func recordSoak(line string) {
	faultRows.Lock()
	defer faultRows.Unlock()
	faultRows.soak = append(faultRows.soak, line)
}

// writeFaultReport prints the fault matrix the tests filled in, then the
// soak test's lines: to the file JOBX_FAULT_REPORT names (make test,
// make test-faults and make test-soak print it), else to standard output.
func writeFaultReport() error {
	faultRows.Lock()
	defer faultRows.Unlock()
	if len(faultRows.rows) == 0 && len(faultRows.load) == 0 && len(faultRows.soak) == 0 {
		return nil
	}
	var w io.Writer = os.Stdout
	if p := os.Getenv("JOBX_FAULT_REPORT"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if len(faultRows.rows) > 0 || len(faultRows.load) > 0 {
		writeMatrix(w)
	}
	if len(faultRows.soak) > 0 {
		fmt.Fprintln(w, strings.Join(faultRows.soak, "\n"))
	}
	return nil
}

// writeMatrix prints the fault rows and the load lines; faultRows must be
// locked.
func writeMatrix(w io.Writer) {
	sort.SliceStable(faultRows.rows, func(i, j int) bool { return faultRows.rows[i].Fault < faultRows.rows[j].Fault })
	var tot faultRow
	fmt.Fprintf(w, "fault matrix (%s)\n", faultScale())
	fmt.Fprintf(w, "%-52s %8s %8s %9s %13s %5s %10s\n", "fault", "injected", "requests", "completed", "failed-clear", "lost", "duplicated")
	for _, r := range faultRows.rows {
		fmt.Fprintf(w, "%-52s %8d %8d %9d %13d %5d %10d\n", r.Fault, r.Injected, r.Requests, r.Completed, r.Failed, r.Lost, r.Dup)
		tot.Injected += r.Injected
		tot.Requests += r.Requests
		tot.Completed += r.Completed
		tot.Failed += r.Failed
		tot.Lost += r.Lost
		tot.Dup += r.Dup
	}
	fmt.Fprintf(w, "%-52s %8d %8d %9d %13d %5d %10d\n", "total", tot.Injected, tot.Requests, tot.Completed, tot.Failed, tot.Lost, tot.Dup)
	if len(faultRows.load) > 0 {
		fmt.Fprintln(w, strings.Join(faultRows.load, "\n"))
	}
}

// fullFaults reports whether the full fault matrix runs (make test-faults);
// make test runs a fast subset.
func fullFaults() bool { return os.Getenv("JOBX_FAULTS") == "full" }

func faultScale() string {
	if fullFaults() {
		return "full: make test-faults"
	}
	return "fast subset: make test; make test-faults runs the full matrix"
}
