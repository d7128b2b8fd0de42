package sharedfs_test

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/sharedfs"
	"github.com/jobx/jobx/sharedfs/tahoetest"
)

func tahoeFS(t *testing.T) (*tahoetest.Server, string, *sharedfs.FS) {
	t.Helper()
	srv := tahoetest.NewServer()
	t.Cleanup(srv.Close)
	cap := srv.MakeDir()
	tfs, err := sharedfs.NewTahoe(srv.URL, cap, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	f, err := sharedfs.New(tfs, "wf")
	if err != nil {
		t.Fatal(err)
	}
	return srv, cap, f
}

func TestTahoeEscapesCapsAndUsesDocumentedForms(t *testing.T) {
	srv, cap, f := tahoeFS(t)
	if err := f.WriteFile("d/a", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Mv("d/a", "d/b"); err != nil {
		t.Fatal(err)
	}
	if err := f.Mv("d/b", "e/c"); err != nil {
		t.Fatal(err)
	}
	log := strings.Join(srv.Log(), "\n")
	esc := strings.ReplaceAll(cap, ":", "%3A")
	for _, want := range []string{
		"/uri/" + esc + "/working/wf?t=json",
		"PUT /uri/" + esc + "/working/wf/d/a\n",
		"POST /uri/" + esc + "/working/wf/d?from_name=a&t=rename&to_name=b",
		"PUT /uri/" + esc + "/working/wf/e/c?t=uri",
		"DELETE /uri/" + esc + "/working/wf/d/b",
	} {
		if !strings.Contains(log+"\n", want) {
			t.Errorf("no request %q in log:\n%s", want, log)
		}
	}
	if strings.Contains(log, cap) {
		t.Errorf("cap sent with unescaped colons:\n%s", log)
	}
}

func TestTahoeReadOnlyCapRefusesWrites(t *testing.T) {
	srv, cap, f := tahoeFS(t)
	if err := f.WriteFile("keep", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro, err := sharedfs.NewTahoe(srv.URL, srv.ReadOnly(cap), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	rf, err := sharedfs.New(ro, "wf") // root exists: MkdirAll is a no-op answer
	if err != nil {
		t.Fatalf("New on a read-only cap: %v", err)
	}
	if b, err := rf.ReadFile("keep"); err != nil || string(b) != "x" {
		t.Fatalf("read through read-only cap: %q, %v", b, err)
	}
	st, err := rf.Stat("keep")
	if err != nil || st.Mode.Perm() != 0o444 {
		t.Fatalf("Stat through read-only cap: %+v, %v; want mode 0444", st, err)
	}
	for name, err := range map[string]error{
		"WriteFile": rf.WriteFile("new", []byte("y"), 0o644),
		"Rm":        rf.Rm("keep"),
		"Mv":        rf.Mv("keep", "moved"),
	} {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s through a read-only cap: %v; want fs.ErrPermission", name, err)
		}
	}
	if b, err := f.ReadFile("keep"); err != nil || string(b) != "x" {
		t.Fatalf("file changed: %q, %v", b, err)
	}
}

func TestTahoeErrorsNameThePathAndTahoesText(t *testing.T) {
	srv := tahoetest.NewServer()
	defer srv.Close()
	tfs, err := sharedfs.NewTahoe(srv.URL, srv.MakeDir(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tfs.Open("/missing/file")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open missing: %v", err)
	}
	for _, want := range []string{"/missing", "404", "No such child: missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var te *sharedfs.TahoeError
	if !errors.As(err, &te) || te.Status != http.StatusNotFound {
		t.Errorf("error %v does not carry a TahoeError 404", err)
	}

	// A well-formed cap the gateway does not hold.
	other := tahoetest.NewServer()
	defer other.Close()
	stray, _ := sharedfs.NewTahoe(srv.URL, other.MakeDir(), srv.Client())
	if _, err := stray.Stat("/"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat on an unknown cap: %v; want fs.ErrNotExist (410)", err)
	}
	// A malformed cap: 400.
	bad, _ := sharedfs.NewTahoe(srv.URL, "URI:DIR2:not-base32!", srv.Client())
	_, err = bad.Stat("/")
	if !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "400") {
		t.Errorf("Stat on a malformed cap: %v; want a 400 wrapping fs.ErrInvalid", err)
	}
}

func TestTahoeExclusiveCreateIsCheckedAtUpload(t *testing.T) {
	_, _, f := tahoeFS(t)
	w, err := f.Open("race", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("race", []byte("winner"), 0o644); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "loser")
	if err := w.Close(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Close of a lost O_EXCL race: %v; want fs.ErrExist (409)", err)
	}
	if b, _ := f.ReadFile("race"); string(b) != "winner" {
		t.Fatalf("race file holds %q", b)
	}
}

func TestTahoeWritesBecomeVisibleOnSyncAndClose(t *testing.T) {
	_, _, f := tahoeFS(t)
	w, err := f.Open("f", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	if ok, _ := f.Exists("f"); ok {
		t.Fatal("file visible before Sync")
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if b, _ := f.ReadFile("f"); string(b) != "abc" {
		t.Fatalf("after Sync read %q", b)
	}
	w.Seek(1, io.SeekStart)
	io.WriteString(w, "X")
	w.Seek(0, io.SeekStart)
	if b, _ := io.ReadAll(w); string(b) != "aXc" {
		t.Fatalf("read back from the open file %q", b)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := f.ReadFile("f"); string(b) != "aXc" {
		t.Fatalf("after Close read %q", b)
	}
	if err := w.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTahoeRequestsHaveADeadline(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	tfs, err := sharedfs.NewTahoe(hang.URL, "URI:DIR2:aaaa:bbbb", hang.Client(), sharedfs.TahoeTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tfs.Stat("/x")
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Stat against a hanging gateway: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stat took %v", d)
	}
}

func TestTahoeUnsupportedOperations(t *testing.T) {
	tfs := newTahoe(t)
	for name, err := range map[string]error{
		"Chmod":   tfs.Chmod("/x", 0o600),
		"Chown":   tfs.Chown("/x", 0, 0),
		"Chtimes": tfs.Chtimes("/x", time.Now(), time.Now()),
	} {
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v; want errors.ErrUnsupported", name, err)
		}
	}
}

func TestNewTahoeValidatesArguments(t *testing.T) {
	for _, tc := range []struct{ gw, cap string }{
		{"ftp://x", "URI:DIR2:a:b"},
		{"http://", "URI:DIR2:a:b"},
		{"http://127.0.0.1:3456", "URI:CHK:a:b:3:10:1"},
		{"http://127.0.0.1:3456", "URI:DIR2:a/b"},
	} {
		if _, err := sharedfs.NewTahoe(tc.gw, tc.cap, nil); err == nil {
			t.Errorf("NewTahoe(%q, %q) succeeded", tc.gw, tc.cap)
		}
	}
}

func TestTahoeStatExposesCapsAndLinkTimes(t *testing.T) {
	tfs := newTahoe(t)
	f, err := tfs.Create("/file")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "data")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := tfs.Stat("/file")
	if err != nil {
		t.Fatal(err)
	}
	n, ok := fi.Sys().(*sharedfs.TahoeNode)
	if !ok || !strings.HasPrefix(n.ROURI, "URI:CHK:") || n.Size != 4 || n.LinkCreated.IsZero() {
		t.Fatalf("Sys() = %+v", fi.Sys())
	}
}
