package sharedfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/sharedfs"
	"github.com/jobx/jobx/sharedfs/tahoetest"
)

func TestParseConfigReadsJSONAndYAML(t *testing.T) {
	c, err := sharedfs.ParseConfig([]byte(`{"backend": "local", "dir": "/var/lib/jobx/fs"}`))
	if err != nil || c.Backend != "local" || c.Dir != "/var/lib/jobx/fs" {
		t.Fatalf("JSON: %+v, %v", c, err)
	}
	c, err = sharedfs.ParseConfig([]byte("backend: tahoe\ngateway: http://127.0.0.1:3456\ndircap: URI:DIR2:aaaa:bbbb\ntimeout: 5s\n"))
	if err != nil || c.Gateway != "http://127.0.0.1:3456" || c.Dircap != "URI:DIR2:aaaa:bbbb" || time.Duration(c.Timeout) != 5*time.Second {
		t.Fatalf("YAML: %+v, %v", c, err)
	}
}

func TestParseConfigNamesWhatIsWrong(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"backend": "local", "dri": "/x"}`, "dri"},
		{`{"backend": "s3"}`, "backend"},
		{`{"backend": "local", "dir": "relative"}`, "dir"},
		{`{"backend": "tahoe", "gateway": "http://h:1", "dircap": "nope"}`, "dircap"},
		{`{"backend": "tahoe", "gateway": "http://h:1", "dircap": "URI:DIR2:a:b", "dir": "/x"}`, "dir"},
	} {
		if _, err := sharedfs.ParseConfig([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v; want an error naming %q", tc.in, err, tc.want)
		}
	}
}

func TestOpenLocalAndHostDir(t *testing.T) {
	dir := t.TempDir()
	cfg := sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: dir}
	f, err := sharedfs.Open(cfg, "wf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteFile("out.txt", []byte("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	host, ok := sharedfs.HostDir(cfg, "wf")
	if !ok || host != filepath.Join(dir, "working", "wf") {
		t.Fatalf("HostDir = %q, %v", host, ok)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out.txt")); err != nil || string(b) != "r" {
		t.Fatalf("host file: %q, %v", b, err)
	}
	if _, ok := sharedfs.HostDir(cfg, "../etc"); ok {
		t.Fatal("HostDir accepted a bad workflow name")
	}
	if _, ok := sharedfs.HostDir(sharedfs.Config{Backend: sharedfs.BackendTahoe}, "wf"); ok {
		t.Fatal("HostDir answered for the tahoe backend")
	}
}

func TestOpenTahoe(t *testing.T) {
	srv := tahoetest.NewServer()
	defer srv.Close()
	cfg := sharedfs.Config{Backend: sharedfs.BackendTahoe, Gateway: srv.URL, Dircap: srv.MakeDir()}
	a, err := sharedfs.Open(cfg, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteFile("x", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := sharedfs.Open(cfg, "b")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Exists("x"); ok || err != nil {
		t.Fatalf("b sees a's file: %v, %v", ok, err)
	}
	if _, err := sharedfs.Open(cfg, "a/b"); !errors.Is(err, sharedfs.ErrBadPath) {
		t.Fatalf("Open with a bad workflow name: %v", err)
	}
}
