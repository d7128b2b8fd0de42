package namespace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox/internal/leftover"
)

// As root, a directory the sandbox user cannot reach is bind-mounted where
// it can, and unmounted on close; the mounts of a sandbox whose owner died
// are unmounted by the next one started beside it (as New does).
func TestStagingReachesHiddenDirectoriesAndCleansUpAfterTheDead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("staging is for root runners")
	}
	parent, err := os.MkdirTemp("", "jxs-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o711)                                     // as New requires of Dir's parents
	hidden := filepath.Join(t.TempDir(), "private", "handlers") // t.TempDir is 0700
	os.MkdirAll(hidden, 0o755)
	os.WriteFile(filepath.Join(hidden, "h.py"), []byte("x"), 0o644)
	if traversable(hidden, 65534, 65534) {
		t.Fatalf("%s is reachable by uid 65534; the test needs a hidden directory", hidden)
	}

	// A sandbox whose owner is dead, with a staging mount left behind.
	dead := filepath.Join(parent, "jxn-dead")
	os.MkdirAll(filepath.Join(dead, "m", "0"), 0o711)
	cmd := exec.Command("true")
	cmd.Run()
	os.WriteFile(filepath.Join(dead, leftover.OwnerFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	if err := tmpfs.Mount(filepath.Join(dead, "m", "0"), 1<<20, 0o755); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(parent, "jxn-live")
	os.MkdirAll(dir, 0o711)
	if _, err := leftover.Sweep(dir, nil); err != nil {
		t.Fatal(err)
	}
	st, err := newStaging(dir, 65534, 65534)
	if err != nil {
		t.Fatal(err)
	}
	if points, _ := tmpfs.Under(dead); len(points) > 0 {
		t.Fatalf("the dead sandbox's mounts are still there: %v", points)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("the dead sandbox's directory is still there: %v", err)
	}
	staged, err := st.reach(hidden)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(staged, dir) || !traversable(staged, 65534, 65534) {
		t.Fatalf("staged at %s, which uid 65534 cannot reach", staged)
	}
	if b, err := os.ReadFile(filepath.Join(staged, "h.py")); err != nil || string(b) != "x" {
		t.Fatalf("the staged directory shows %q, %v", b, err)
	}
	if again, _ := st.reach(hidden); again != staged {
		t.Fatalf("staged twice: %s, %s", staged, again)
	}
	if open, _ := st.reach(parent); open != parent {
		t.Fatalf("a reachable directory was staged: %s", open)
	}
	st.close()
	if points, _ := tmpfs.Under(dir); len(points) > 0 {
		t.Fatalf("close left mounts: %v", points)
	}
}
