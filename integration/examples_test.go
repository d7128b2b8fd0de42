package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/sharedfs"
)

// examplesCluster loads every workflow directory of examples/ the way
// `jobx up --load` does.
func examplesCluster(t *testing.T) *cluster {
	c := startCluster(t)
	shared := sharedFS(t)
	c.addRunner(shared.runner)
	dirs, err := filepath.Glob("../examples/*/workflow.yaml")
	if err != nil || len(dirs) < 3 {
		t.Fatalf("examples: %v %v", dirs, err)
	}
	for _, d := range dirs {
		res, err := manifest.Apply(context.Background(), c.store, filepath.Dir(d), testenv.Logger(t))
		if err != nil {
			t.Fatalf("apply %s: %v", d, err)
		}
		// As jobx up --load does: the example's files/ in its shared files.
		if files := filepath.Join(filepath.Dir(d), "files"); isDir(files) {
			fsys, err := sharedfs.Open(sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: shared.dir}, res.Workflow.Name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Upload(files, "/"); err != nil {
				t.Fatal(err)
			}
			fsys.Close()
		}
	}
	return c
}

func sumValues(t *testing.T, v string) int {
	t.Helper()
	var x any
	if err := json.Unmarshal([]byte(v), &x); err != nil {
		t.Fatal(err)
	}
	switch x := x.(type) {
	case float64:
		return int(x)
	case []any:
		n := 0
		for _, e := range x {
			n += int(e.(float64))
		}
		return n
	}
	t.Fatalf("unexpected value %s", v)
	return 0
}

func TestExampleDevJobs(t *testing.T) {
	c := examplesCluster(t)
	for _, tc := range []struct {
		job  string
		arg  int
		list bool
	}{{"job5", 1000, false}, {"job4", 17413, true}} {
		t.Run(tc.job, func(t *testing.T) {
			got := c.post("dev", tc.job, fmt.Sprintf(`{"arguments":{"arg1":%d}}`, tc.arg), "").pairs(t)
			total := 0
			for k, v := range got {
				if n, err := strconv.Atoi(k); err != nil || n < 0 || n > 9 {
					t.Fatalf("key %s is not 0..9", k)
				}
				if tc.list != strings.HasPrefix(v, "[") {
					t.Fatalf("key %s: value %s (want a list: %v)", k, v, tc.list)
				}
				total += sumValues(t, v)
			}
			if total != tc.arg {
				t.Fatalf("the intervals add up to %d, not %d: %v", total, tc.arg, got)
			}
		})
	}
}

func TestExampleWordCount(t *testing.T) {
	c := examplesCluster(t)
	dir, _ := filepath.Abs("../examples/wordcount/files/texts")
	body, _ := json.Marshal(map[string]any{"arguments": map[string]string{"dir": "texts"}})
	got := c.post("wordcount", "wordcount", string(body), "").pairs(t)
	want := map[string]int{}
	files, _ := filepath.Glob(dir + "/*.txt")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, w := range regexp.MustCompile(`[a-z']+`).FindAllString(strings.ToLower(string(b)), -1) {
			want[strings.Trim(w, "'")]++
		}
	}
	if len(got) != len(want) || len(want) < 20 {
		t.Fatalf("want %d words, got %d: %v", len(want), len(got), got)
	}
	for w, n := range want {
		if got[strconv.Quote(w)] != strconv.Itoa(n) {
			t.Fatalf("word %q: want %d, got %s", w, n, got[strconv.Quote(w)])
		}
	}
}

func TestExampleLanguages(t *testing.T) {
	c := examplesCluster(t)
	letters := c.post("languages", "letters", `{"arguments":{"text":"Hello, World"}}`, "").pairs(t)
	assertPairs(t, letters, map[string]string{`"h"`: "1", `"e"`: "1", `"l"`: "3", `"o"`: "2", `"w"`: "1", `"r"`: "1", `"d"`: "1"})
	squares := c.post("languages", "squares", `{"arguments":{"a":3,"b":4}}`, "").pairs(t)
	assertPairs(t, squares, map[string]string{`"squares"`: "25"})
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
