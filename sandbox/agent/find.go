package agent

import (
	"errors"
	"os"
	"path/filepath"
)

// Name is the agent binary's file name.
const Name = "jobx-agent"

// Find looks for the static jobx-agent binary beside the running
// executable, then in PATH.
func Find() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), Name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, Name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", errors.New("no jobx-agent binary beside jobx or in PATH (make build builds it; CGO_ENABLED=0 go build ./cmd/jobx-agent)")
}
