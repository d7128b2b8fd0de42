package tahoetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jobx/jobx/sharedfs/tahoetest"
)

type client struct {
	t   *testing.T
	srv *tahoetest.Server
}

func (c client) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func esc(cap string) string { return strings.ReplaceAll(cap, ":", "%3A") }

func newClient(t *testing.T) client {
	srv := tahoetest.NewServer()
	t.Cleanup(srv.Close)
	return client{t, srv}
}

func TestUnlinkedUploadIsContentAddressed(t *testing.T) {
	c := newClient(t)
	code, cap1 := c.do("PUT", "/uri", "hello")
	if code != http.StatusCreated || !strings.HasPrefix(cap1, "URI:CHK:") {
		t.Fatalf("PUT /uri = %d %q", code, cap1)
	}
	code, cap2 := c.do("PUT", "/uri", "hello")
	if code != http.StatusOK || cap2 != cap1 {
		t.Fatalf("second PUT /uri = %d %q, want 200 %q", code, cap2, cap1)
	}
	if code, body := c.do("GET", "/uri/"+esc(cap1), ""); code != 200 || body != "hello" {
		t.Fatalf("GET filecap = %d %q", code, body)
	}
}

func TestDirectoryLifecycleFollowsTheWebAPI(t *testing.T) {
	c := newClient(t)
	code, dircap := c.do("POST", "/uri?t=mkdir", "")
	if code != 200 || !strings.HasPrefix(dircap, "URI:DIR2:") {
		t.Fatalf("POST /uri?t=mkdir = %d %q", code, dircap)
	}
	d := "/uri/" + esc(dircap)
	if code, _ := c.do("PUT", d+"/a/b/file.txt", "data"); code != http.StatusCreated {
		t.Fatalf("PUT new file = %d, want 201", code)
	}
	if code, _ := c.do("PUT", d+"/a/b/file.txt", "data2"); code != http.StatusOK {
		t.Fatalf("PUT replacing file = %d, want 200", code)
	}
	if code, body := c.do("PUT", d+"/a/b/file.txt?replace=false", "x"); code != http.StatusConflict {
		t.Fatalf("PUT replace=false = %d %q, want 409", code, body)
	}
	if code, body := c.do("GET", d+"/a/b/file.txt", ""); code != 200 || body != "data2" {
		t.Fatalf("GET file = %d %q", code, body)
	}
	if code, body := c.do("GET", d+"/a/nope?t=json", ""); code != 404 || !strings.Contains(body, "No such child: nope") {
		t.Fatalf("GET missing = %d %q", code, body)
	}
	if code, _ := c.do("GET", d+"/a//b?t=json", ""); code != 400 {
		t.Fatalf("empty path component = %d, want 400", code)
	}
	if code, body := c.do("GET", d+"/a/b/file.txt/x", ""); code != 400 || !strings.Contains(body, "Files have no children") {
		t.Fatalf("path through a file = %d %q", code, body)
	}

	code, body := c.do("GET", d+"/a?t=json", "")
	if code != 200 {
		t.Fatalf("GET dir t=json = %d %q", code, body)
	}
	var node []json.RawMessage
	if err := json.Unmarshal([]byte(body), &node); err != nil || len(node) != 2 || string(node[0]) != `"dirnode"` {
		t.Fatalf("dir t=json shape: %s", body)
	}
	var props struct {
		RW       string `json:"rw_uri"`
		RO       string `json:"ro_uri"`
		Children map[string][]json.RawMessage
	}
	json.Unmarshal(node[1], &props)
	if !strings.HasPrefix(props.RW, "URI:DIR2:") || !strings.HasPrefix(props.RO, "URI:DIR2-RO:") {
		t.Fatalf("dir caps: %s", node[1])
	}
	b, ok := props.Children["b"]
	if !ok || string(b[0]) != `"dirnode"` || !strings.Contains(string(b[1]), `"linkcrtime"`) || !strings.Contains(string(b[1]), `"linkmotime"`) {
		t.Fatalf("child b: %s", body)
	}

	code, body = c.do("GET", d+"/a/b/file.txt?t=json", "")
	if code != 200 || !strings.HasPrefix(body, `["filenode",`) || !strings.Contains(body, `"size":5`) ||
		!strings.Contains(body, `"mutable":false`) || !strings.Contains(body, `"ro_uri":"URI:CHK:`) || !strings.Contains(body, `"linkmotime"`) {
		t.Fatalf("file t=json = %d %s", code, body)
	}

	if code, _ := c.do("POST", d+"/a/b?t=rename&from_name=file.txt&to_name=renamed.txt", ""); code != 200 {
		t.Fatalf("rename = %d", code)
	}
	if code, _ := c.do("GET", d+"/a/b/renamed.txt", ""); code != 200 {
		t.Fatalf("renamed file = %d", code)
	}
	code, filecap := c.do("GET", d+"/a/b/renamed.txt?t=uri", "")
	if code != 200 || !strings.HasPrefix(filecap, "URI:CHK:") {
		t.Fatalf("t=uri = %d %q", code, filecap)
	}
	if code, _ := c.do("PUT", d+"/linked?t=uri", filecap); code != http.StatusCreated {
		t.Fatalf("PUT t=uri = %d", code)
	}
	if code, _ := c.do("PUT", d+"/linked?t=uri&replace=false", filecap); code != http.StatusConflict {
		t.Fatalf("PUT t=uri replace=false = %d", code)
	}
	if code, _ := c.do("PUT", d+"/a?t=uri&replace=only-files", filecap); code != http.StatusConflict {
		t.Fatalf("PUT t=uri replace=only-files onto a dir = %d", code)
	}
	if code, _ := c.do("DELETE", d+"/a/b/renamed.txt", ""); code != 200 {
		t.Fatalf("DELETE = %d", code)
	}
	if code, _ := c.do("DELETE", d+"/a/b/renamed.txt", ""); code != 404 {
		t.Fatalf("second DELETE = %d, want 404", code)
	}
	if code, body := c.do("GET", d+"/linked", ""); code != 200 || body != "data2" {
		t.Fatalf("hard link outlived the unlink: %d %q", code, body)
	}
	if code, _ := c.do("POST", d+"/x/y?t=mkdir", ""); code != 200 {
		t.Fatalf("mkdir -p = %d", code)
	}
	if code, _ := c.do("POST", d+"/linked/z?t=mkdir", ""); code != 409 {
		t.Fatalf("mkdir through a file = %d, want 409", code)
	}
}

func TestReadOnlyCapsRefuseWrites(t *testing.T) {
	c := newClient(t)
	w := c.srv.MakeDir()
	c.do("PUT", "/uri/"+esc(w)+"/sub/f", "x")
	ro := "/uri/" + esc(c.srv.ReadOnly(w))
	if code, body := c.do("GET", ro+"/sub/f", ""); code != 200 || body != "x" {
		t.Fatalf("read through RO cap = %d %q", code, body)
	}
	if _, body := c.do("GET", ro+"/sub?t=json", ""); strings.Contains(body, "rw_uri") {
		t.Fatalf("RO listing leaks write caps: %s", body)
	}
	for _, r := range [][2]string{
		{"PUT", ro + "/sub/g"}, {"PUT", ro + "/new/g"}, {"DELETE", ro + "/sub/f"},
		{"POST", ro + "/sub?t=mkdir&name=n"}, {"POST", ro + "/sub?t=rename&from_name=f&to_name=g"},
	} {
		if code, _ := c.do(r[0], r[1], "y"); code < 400 || code > 499 {
			t.Errorf("%s %s through RO cap = %d, want 4xx", r[0], r[1], code)
		}
	}
}

func TestMalformedAndUnknownCaps(t *testing.T) {
	c := newClient(t)
	if code, _ := c.do("GET", "/uri/URI%3ADIR2%3Anot!base32?t=json", ""); code != 400 {
		t.Fatalf("malformed cap = %d, want 400", code)
	}
	other := tahoetest.NewServer()
	defer other.Close()
	if code, _ := c.do("GET", "/uri/"+esc(other.MakeDir())+"?t=json", ""); code != 410 {
		t.Fatalf("unknown cap = %d, want 410", code)
	}
	if code, _ := c.do("PUT", "/uri/"+esc(c.srv.MakeDir())+"/x?t=uri", "URI:CHK:bogus"); code != 400 {
		t.Fatalf("t=uri with a malformed cap = %d, want 400", code)
	}
}

func TestRangeRequests(t *testing.T) {
	c := newClient(t)
	w := c.srv.MakeDir()
	c.do("PUT", "/uri/"+esc(w)+"/f", "0123456789")
	req, _ := http.NewRequest("GET", c.srv.URL+"/uri/"+esc(w)+"/f", nil)
	req.Header.Set("Range", "bytes=3-5")
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || string(b) != "345" {
		t.Fatalf("Range GET = %d %q", resp.StatusCode, b)
	}
}
