package sharedfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// DefaultTahoeTimeout bounds each request to a Tahoe-LAFS gateway,
// including the reading of its response body.
const DefaultTahoeTimeout = 30 * time.Second

// maxTahoeJSON bounds the t=json answers the client reads (large directories).
const maxTahoeJSON = 64 << 20

// Tahoe is an afero.Fs over the web API (WAPI) of a Tahoe-LAFS gateway,
// rooted at a directory capability: path "/a/b" is child "b" of child "a"
// of that directory.
//
// Files are Tahoe immutable (CHK) files. A file opened for writing is held
// in memory and uploaded (PUT, linking it at its path) by Sync or Close;
// reads stream from the gateway, using Range requests for Seek and ReadAt.
// Chmod, Chown and Chtimes fail with errors.ErrUnsupported: Tahoe has no
// modes, owners or settable times. Modification times are the link times
// Tahoe keeps (metadata.tahoe.linkmotime).
//
// Errors are *fs.PathError values wrapping a *TahoeError (whose Unwrap
// gives fs.ErrNotExist for 404 and 410, fs.ErrExist for 409,
// fs.ErrPermission for 403, fs.ErrInvalid for 400) or an errno such as
// syscall.ENOTDIR where the OS would give one. A Tahoe is safe for
// concurrent use; a file handle is not shared between goroutines safely
// beyond what its mutex guards (one operation at a time).
type Tahoe struct {
	gateway string // without trailing slash
	dircap  string
	client  *http.Client
	timeout time.Duration
}

var _ afero.Fs = (*Tahoe)(nil)

// TahoeOption configures a Tahoe backend.
type TahoeOption func(*Tahoe)

// TahoeTimeout sets the deadline of each request (DefaultTahoeTimeout if
// not set or not positive).
func TahoeTimeout(d time.Duration) TahoeOption {
	return func(t *Tahoe) {
		if d > 0 {
			t.timeout = d
		}
	}
}

// NewTahoe returns the Tahoe backend for the directory writeDircap
// ("URI:DIR2:...") of the gateway at gatewayURL ("http://127.0.0.1:3456").
// A read-only cap ("URI:DIR2-RO:...") is accepted; writes then fail with
// fs.ErrPermission. A nil httpClient means http.DefaultClient. NewTahoe
// does no I/O.
func NewTahoe(gatewayURL, writeDircap string, httpClient *http.Client, opts ...TahoeOption) (*Tahoe, error) {
	u, err := url.Parse(gatewayURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sharedfs: tahoe gateway %q: want an http(s)://host:port URL", gatewayURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sharedfs: tahoe gateway %q: must not have a query or fragment", gatewayURL)
	}
	if !strings.HasPrefix(writeDircap, "URI:DIR2") || strings.ContainsAny(writeDircap, "/?# \x00") {
		return nil, fmt.Errorf("sharedfs: tahoe dircap %q: want a directory cap (URI:DIR2:...)", writeDircap)
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	t := &Tahoe{
		gateway: strings.TrimRight(u.String(), "/"),
		dircap:  writeDircap,
		client:  httpClient,
		timeout: DefaultTahoeTimeout,
	}
	for _, o := range opts {
		o(t)
	}
	return t, nil
}

// Name returns the backend's name.
func (t *Tahoe) Name() string { return "sharedfs.Tahoe" }

// TahoeError is an error answer of a Tahoe-LAFS gateway.
type TahoeError struct {
	Method string
	Status int
	Text   string // the response body, trimmed and shortened
}

func (e *TahoeError) Error() string {
	return fmt.Sprintf("tahoe %s: %d %s: %s", e.Method, e.Status, http.StatusText(e.Status), e.Text)
}

// Unwrap maps the status to the fs error it means.
func (e *TahoeError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound, http.StatusGone:
		return fs.ErrNotExist
	case http.StatusConflict:
		return fs.ErrExist
	case http.StatusForbidden:
		return fs.ErrPermission
	case http.StatusBadRequest:
		return fs.ErrInvalid
	}
	return nil
}

// noChildren reports whether err is Tahoe's answer to a path that goes
// through a file ("Files have no children named ..."), the OS's ENOTDIR.
func noChildren(err error) bool {
	var te *TahoeError
	return errors.As(err, &te) && te.Status == http.StatusBadRequest && strings.Contains(te.Text, "have no children")
}

// errNoSuchChild marks a lookup whose parent exists but lacks the child.
var errNoSuchChild = fmt.Errorf("no such child: %w", fs.ErrNotExist)

// tclean maps an afero path to a cleaned absolute path under the dircap.
func tclean(name string) string { return path.Clean("/" + name) }

// escapeCap URL-escapes a cap, colons included, as the WAPI asks.
func escapeCap(c string) string {
	return strings.ReplaceAll(url.PathEscape(c), ":", "%3A")
}

func (t *Tahoe) url(p string, q url.Values) string {
	var b strings.Builder
	b.WriteString(t.gateway)
	b.WriteString("/uri/")
	b.WriteString(escapeCap(t.dircap))
	for _, seg := range splitPath(p) {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(seg))
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	return b.String()
}

// request is one WAPI call. The returned body is read in full (bounded);
// status must be one of want, or the answer becomes a *TahoeError.
func (t *Tahoe) request(op, p, method string, q url.Values, body []byte, want ...int) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	resp, err := t.send(ctx, method, p, q, body, nil)
	if err != nil {
		return nil, 0, &fs.PathError{Op: op, Path: p, Err: err}
	}
	defer resp.Body.Close()
	if err := checkStatus(method, resp, want); err != nil {
		return nil, resp.StatusCode, &fs.PathError{Op: op, Path: p, Err: err}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTahoeJSON+1))
	if err == nil && len(b) > maxTahoeJSON {
		err = fmt.Errorf("tahoe %s: answer larger than %d bytes", method, maxTahoeJSON)
	}
	if err != nil {
		return nil, resp.StatusCode, &fs.PathError{Op: op, Path: p, Err: err}
	}
	return b, resp.StatusCode, nil
}

func (t *Tahoe) send(ctx context.Context, method, p string, q url.Values, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.url(p, q), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/plain, application/json")
	return t.client.Do(req)
}

func checkStatus(method string, resp *http.Response, want []int) error {
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(b))
	if len(text) > 1024 {
		text = text[:1024] + "..."
	}
	if text == "" {
		text = "(empty answer)"
	}
	return &TahoeError{Method: method, Status: resp.StatusCode, Text: text}
}

// TahoeNode is a node as the WAPI's t=json describes it. FileInfo.Sys()
// of the Tahoe backend returns a *TahoeNode.
type TahoeNode struct {
	Type         string // "filenode", "dirnode" or "unknown"
	RWURI        string // write cap, for writable directories
	ROURI        string // read cap
	Size         int64
	Mutable      bool
	Format       string
	LinkCreated  time.Time // metadata.tahoe.linkcrtime; zero at the root
	LinkModified time.Time // metadata.tahoe.linkmotime; zero at the root
	Children     map[string]*TahoeNode

	writable bool // the link to it can be changed (parent writable)
}

type tahoeProps struct {
	RWURI    string                     `json:"rw_uri"`
	ROURI    string                     `json:"ro_uri"`
	Size     *int64                     `json:"size"`
	Mutable  bool                       `json:"mutable"`
	Format   string                     `json:"format"`
	Children map[string]json.RawMessage `json:"children"`
	Metadata struct {
		Tahoe struct {
			LinkCrTime float64 `json:"linkcrtime"`
			LinkMoTime float64 `json:"linkmotime"`
		} `json:"tahoe"`
	} `json:"metadata"`
}

func parseNode(raw []byte) (*TahoeNode, error) {
	var pair []json.RawMessage
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return nil, fmt.Errorf("tahoe: t=json answer is not a [type, {...}] pair: %.200s", raw)
	}
	n := &TahoeNode{}
	var props tahoeProps
	if err := json.Unmarshal(pair[0], &n.Type); err != nil {
		return nil, fmt.Errorf("tahoe: bad node type in %.200s", raw)
	}
	if err := json.Unmarshal(pair[1], &props); err != nil {
		return nil, fmt.Errorf("tahoe: bad node properties: %w", err)
	}
	n.RWURI, n.ROURI, n.Mutable, n.Format = props.RWURI, props.ROURI, props.Mutable, props.Format
	if props.Size != nil {
		n.Size = *props.Size
	}
	n.LinkCreated = unixFloat(props.Metadata.Tahoe.LinkCrTime)
	n.LinkModified = unixFloat(props.Metadata.Tahoe.LinkMoTime)
	if n.Type == "dirnode" {
		n.Children = make(map[string]*TahoeNode, len(props.Children))
		for name, c := range props.Children {
			child, err := parseNode(c)
			if err != nil {
				return nil, fmt.Errorf("child %q: %w", name, err)
			}
			child.writable = n.RWURI != ""
			n.Children[name] = child
		}
	}
	return n, nil
}

func unixFloat(f float64) time.Time {
	if f == 0 {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// cap returns the strongest cap of n.
func (n *TahoeNode) cap() string {
	if n.RWURI != "" {
		return n.RWURI
	}
	return n.ROURI
}

// getJSON fetches the t=json description of p (with children for directories).
func (t *Tahoe) getJSON(op, p string) (*TahoeNode, error) {
	b, _, err := t.request(op, p, http.MethodGet, url.Values{"t": {"json"}}, nil, http.StatusOK)
	if err != nil {
		if noChildren(err) {
			return nil, &fs.PathError{Op: op, Path: p, Err: syscall.ENOTDIR}
		}
		return nil, err
	}
	n, err := parseNode(b)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	if p == "/" {
		n.writable = n.RWURI != ""
	}
	return n, nil
}

// lookup describes p as its parent's listing does (so that link metadata
// is known for directories too). A missing child wraps errNoSuchChild; a
// missing parent wraps fs.ErrNotExist only.
func (t *Tahoe) lookup(op, p string) (*TahoeNode, error) {
	if p == "/" {
		return t.getJSON(op, p)
	}
	parent, err := t.getJSON(op, path.Dir(p))
	if err != nil {
		return nil, err
	}
	if parent.Type != "dirnode" {
		return nil, &fs.PathError{Op: op, Path: p, Err: syscall.ENOTDIR}
	}
	child, ok := parent.Children[path.Base(p)]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: p, Err: errNoSuchChild}
	}
	return child, nil
}

// tahoeInfo is the fs.FileInfo of a Tahoe node.
type tahoeInfo struct {
	name string
	node *TahoeNode
}

func (i tahoeInfo) Name() string { return i.name }
func (i tahoeInfo) Size() int64  { return i.node.Size }
func (i tahoeInfo) Mode() fs.FileMode {
	switch {
	case i.IsDir() && i.node.RWURI != "":
		return fs.ModeDir | 0o755
	case i.IsDir():
		return fs.ModeDir | 0o555
	case i.node.writable:
		return 0o644
	}
	return 0o444
}
func (i tahoeInfo) ModTime() time.Time { return i.node.LinkModified }
func (i tahoeInfo) IsDir() bool        { return i.node.Type == "dirnode" }
func (i tahoeInfo) Sys() any           { return i.node }

func infoName(p string) string {
	if p == "/" {
		return "/"
	}
	return path.Base(p)
}

// Stat describes name.
func (t *Tahoe) Stat(name string) (os.FileInfo, error) {
	p := tclean(name)
	n, err := t.lookup("stat", p)
	if err != nil {
		return nil, err
	}
	return tahoeInfo{name: infoName(p), node: n}, nil
}

// Create creates or truncates name for writing (uploaded on Close).
func (t *Tahoe) Create(name string) (afero.File, error) {
	return t.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open opens name for reading.
func (t *Tahoe) Open(name string) (afero.File, error) { return t.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile opens name with os.OpenFile's flags; perm is ignored. Writable
// files buffer in memory and upload on Sync and Close; O_EXCL is enforced
// by the gateway at upload too (replace=false).
func (t *Tahoe) OpenFile(name string, flag int, _ os.FileMode) (afero.File, error) {
	p := tclean(name)
	writing := flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_TRUNC) != 0
	n, err := t.lookup("open", p)
	if !writing {
		if err != nil {
			return nil, err
		}
		info := tahoeInfo{name: infoName(p), node: n}
		if info.IsDir() {
			return t.openDir(name, p, info)
		}
		return &tahoeReader{t: t, name: name, p: p, info: info}, nil
	}
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, errNoSuchChild):
		return nil, err
	case exists && n.Type == "dirnode":
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	case exists && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrExist}
	case !exists && flag&os.O_CREATE == 0:
		return nil, err
	}
	w := &tahoeWriter{
		t: t, name: name, p: p,
		readable: flag&os.O_RDWR != 0,
		append:   flag&os.O_APPEND != 0,
		excl:     flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0,
		dirty:    !exists || flag&os.O_TRUNC != 0,
		modTime:  time.Now(),
	}
	if exists && flag&os.O_TRUNC == 0 {
		if w.buf, err = t.download("open", p); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (t *Tahoe) download(op, p string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	resp, err := t.send(ctx, http.MethodGet, p, nil, nil, nil)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	defer resp.Body.Close()
	if err := checkStatus(http.MethodGet, resp, []int{http.StatusOK}); err != nil {
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: p, Err: err}
	}
	return b, nil
}

// upload stores data at p (PUT, link replaced unless excl).
func (t *Tahoe) upload(op, p string, data []byte, excl bool) error {
	var q url.Values
	if excl {
		q = url.Values{"replace": {"false"}}
	}
	_, _, err := t.request(op, p, http.MethodPut, q, data, http.StatusOK, http.StatusCreated)
	return err
}

func (t *Tahoe) openDir(name, p string, info tahoeInfo) (afero.File, error) {
	n, err := t.getJSON("open", p)
	if err != nil {
		return nil, err
	}
	infos := make([]os.FileInfo, 0, len(n.Children))
	for cname, c := range n.Children {
		infos = append(infos, tahoeInfo{name: cname, node: c})
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	return &tahoeDir{name: name, info: info, entries: infos}, nil
}

// Mkdir creates directory name; its parent must exist and name must not.
func (t *Tahoe) Mkdir(name string, _ os.FileMode) error {
	p := tclean(name)
	_, err := t.lookup("mkdir", p)
	switch {
	case err == nil:
		return &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
	case !errors.Is(err, errNoSuchChild):
		return err
	}
	_, _, err = t.request("mkdir", p, http.MethodPost, url.Values{"t": {"mkdir"}}, nil, http.StatusOK, http.StatusCreated)
	return err
}

// MkdirAll creates directory name and its missing parents (POST t=mkdir).
func (t *Tahoe) MkdirAll(name string, _ os.FileMode) error {
	p := tclean(name)
	if p == "/" {
		return nil
	}
	_, _, err := t.request("mkdir", p, http.MethodPost, url.Values{"t": {"mkdir"}}, nil, http.StatusOK, http.StatusCreated)
	return err
}

// Remove unlinks file or empty directory name.
func (t *Tahoe) Remove(name string) error {
	p := tclean(name)
	if p == "/" {
		return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("cannot unlink the directory of the cap: %w", fs.ErrInvalid)}
	}
	n, err := t.lookup("remove", p)
	if err != nil {
		return err
	}
	if n.Type == "dirnode" {
		d, err := t.getJSON("remove", p)
		if err != nil {
			return err
		}
		if len(d.Children) > 0 {
			return &fs.PathError{Op: "remove", Path: p, Err: syscall.ENOTEMPTY}
		}
	}
	_, _, err = t.request("remove", p, http.MethodDelete, nil, nil, http.StatusOK)
	return err
}

// RemoveAll unlinks name with everything below it; a missing name is not
// an error.
func (t *Tahoe) RemoveAll(name string) error {
	p := tclean(name)
	if p == "/" {
		return &fs.PathError{Op: "removeall", Path: p, Err: fmt.Errorf("cannot unlink the directory of the cap: %w", fs.ErrInvalid)}
	}
	_, _, err := t.request("removeall", p, http.MethodDelete, nil, nil, http.StatusOK)
	if errors.Is(err, fs.ErrNotExist) || noChildren(err) {
		return nil
	}
	return err
}

// Rename moves oldname to newname. Within one directory it is Tahoe's
// t=rename; across directories the child's cap is linked at the new place
// (PUT t=uri) and then unlinked from the old. A file at newname is
// replaced; a directory at newname, or a file there when moving a
// directory, is fs.ErrExist. newname's parent must exist.
func (t *Tahoe) Rename(oldname, newname string) error {
	po, pn := tclean(oldname), tclean(newname)
	if po == "/" || pn == "/" {
		return &os.LinkError{Op: "rename", Old: po, New: pn, Err: fmt.Errorf("cannot rename the directory of the cap: %w", fs.ErrInvalid)}
	}
	if po == pn {
		return nil
	}
	src, err := t.lookup("rename", po)
	if err != nil {
		return err
	}
	if src.Type == "dirnode" && within(pn, po) {
		return &os.LinkError{Op: "rename", Old: po, New: pn, Err: fmt.Errorf("cannot move a directory into itself: %w", fs.ErrInvalid)}
	}
	dst, err := t.lookup("rename", pn)
	switch {
	case err == nil && (dst.Type == "dirnode" || src.Type == "dirnode"):
		return &os.LinkError{Op: "rename", Old: po, New: pn, Err: fs.ErrExist}
	case err != nil && !errors.Is(err, errNoSuchChild):
		return err
	}
	if path.Dir(po) == path.Dir(pn) {
		q := url.Values{"t": {"rename"}, "from_name": {path.Base(po)}, "to_name": {path.Base(pn)}}
		_, _, err := t.request("rename", path.Dir(po), http.MethodPost, q, nil, http.StatusOK)
		return err
	}
	if _, _, err := t.request("rename", pn, http.MethodPut, url.Values{"t": {"uri"}}, []byte(src.cap()), http.StatusOK, http.StatusCreated); err != nil {
		return err
	}
	if _, _, err := t.request("rename", po, http.MethodDelete, nil, nil, http.StatusOK); err != nil {
		return fmt.Errorf("linked at %s but not unlinked from %s: %w", pn, po, err)
	}
	return nil
}

// Chmod is unsupported: Tahoe has no file modes.
func (t *Tahoe) Chmod(name string, _ os.FileMode) error {
	return &fs.PathError{Op: "chmod", Path: tclean(name), Err: errors.ErrUnsupported}
}

// Chown is unsupported: Tahoe has no owners.
func (t *Tahoe) Chown(name string, _, _ int) error {
	return &fs.PathError{Op: "chown", Path: tclean(name), Err: errors.ErrUnsupported}
}

// Chtimes is unsupported: Tahoe sets link times itself.
func (t *Tahoe) Chtimes(name string, _, _ time.Time) error {
	return &fs.PathError{Op: "chtimes", Path: tclean(name), Err: errors.ErrUnsupported}
}
