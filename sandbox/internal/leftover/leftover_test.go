package leftover

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// Sweep removes the directories beside its own that a dead process
// claimed (old "pid" claims too), and leaves those of live processes,
// unclaimed ones, other names and its own.
func TestSweepRemovesOnlyWhatDeadOwnersClaimed(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{ // name: owner file ("" for none)
		"jxn-own":       "",
		"jxn-dead":      fmt.Sprintf("%d %s\n", dead.Process.Pid, "1"),
		"jxn-dead-old":  fmt.Sprintf("%d", dead.Process.Pid),
		"jxn-reused":    fmt.Sprintf("%d %s\n", os.Getpid(), "1"), // this pid, another start time
		"jxn-live":      "",
		"jxn-unclaimed": "",
		"jxc-dead":      fmt.Sprintf("%d %s\n", dead.Process.Pid, "1"),
	}
	for name, owner := range dirs {
		if err := os.MkdirAll(filepath.Join(parent, name, "lib"), 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			os.WriteFile(filepath.Join(parent, name, OwnerFile), []byte(owner), 0o644)
		}
	}
	if err := Claim(filepath.Join(parent, "jxn-live")); err != nil {
		t.Fatal(err)
	}
	if claimed, alive := Owner(filepath.Join(parent, "jxn-live")); !claimed || !alive {
		t.Fatalf("this process's claim: claimed %v, alive %v", claimed, alive)
	}
	removed, err := Sweep(filepath.Join(parent, "jxn-own"), nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{filepath.Join(parent, "jxn-dead"), filepath.Join(parent, "jxn-dead-old"), filepath.Join(parent, "jxn-reused")}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	for name := range dirs {
		_, err := os.Stat(filepath.Join(parent, name))
		if gone := os.IsNotExist(err); gone != slices.Contains(want, filepath.Join(parent, name)) {
			t.Errorf("%s: gone %v", name, gone)
		}
	}
}
