// Package tahoetest provides an in-memory double of a Tahoe-LAFS gateway's
// web API (WAPI) for tests, in the spirit of Tahoe's own fake
// (allmydata.testing.web) but covering the directory operations sharedfs
// uses. It follows docs/frontends/webapi.rst:
//
//   - immutable files get content-addressed "URI:CHK:..." caps; directories
//     get random "URI:DIR2:..." write caps and "URI:DIR2-RO:..." read caps;
//     children reached through a read-only cap are read-only too;
//   - PUT /uri uploads unlinked (201 new, 200 known contents);
//     POST|PUT /uri?t=mkdir makes an unlinked directory;
//   - GET /uri/$CAP[/path] reads a file (Range supported) and t=json,
//     t=uri, t=readonly-uri describe a node; metadata.tahoe.linkcrtime and
//     linkmotime are kept on every link;
//   - PUT /uri/$DIRCAP/path uploads and links, creating intermediate
//     directories (201 new link, 200 replaced); t=uri links an existing cap;
//     replace=false (and only-files) give 409 Conflict;
//   - POST|PUT /uri/$DIRCAP/path?t=mkdir is mkdir -p (409 when a file is in
//     the way); POST .../dir?t=mkdir&name=, t=rename&from_name=&to_name=,
//     t=unlink|delete&name=; DELETE /uri/$DIRCAP/path unlinks;
//   - errors are text/plain: 404 "No such child: NAME", 400 for malformed
//     caps, bad arguments, empty path components and paths through files
//     ("Files have no children named ..."), 410 for well-formed caps it does
//     not hold, 403 for writes through a read-only cap.
//
// Not modelled: mutable files (SSK/MDMF), LIT caps for small files,
// deep-immutable directories, t=move, t=set_children, operation handles,
// HTML pages beyond a bare listing.
package tahoetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Server is a Tahoe-LAFS web-API double listening on loopback. It is safe
// for concurrent use. Close it (httptest.Server.Close) when done.
type Server struct {
	*httptest.Server

	mu    sync.Mutex          // guards the fields below and every dirNode
	files map[string][]byte   // CHK cap -> contents
	dirs  map[string]*dirNode // write cap and read cap -> directory
	log   []string
}

type dirNode struct {
	writecap, readcap, verifycap string
	children                     map[string]*edge
}

// edge is a named link from a directory to a child.
type edge struct {
	rwcap  string // directories linked by a write cap
	rocap  string // CHK cap, or the directory's read cap
	crtime float64
	motime float64
}

// NewServer starts a double on a loopback port.
func NewServer() *Server {
	s := &Server{files: map[string][]byte{}, dirs: map[string]*dirNode{}}
	s.Server = httptest.NewServer(s)
	return s
}

// MakeDir creates an unlinked directory and returns its write cap, as
// POST /uri?t=mkdir does.
func (s *Server) MakeDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mkdir().writecap
}

// ReadOnly returns the read-only cap of the directory whose write cap is
// writecap, or "" if it holds no such directory.
func (s *Server) ReadOnly(writecap string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.dirs[writecap]; ok {
		return d.readcap
	}
	return ""
}

// Log returns the requests served so far, as "METHOD /request/uri".
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *Server) mkdir() *dirNode {
	w, r, v := newDirCaps()
	d := &dirNode{writecap: w, readcap: r, verifycap: v, children: map[string]*edge{}}
	s.dirs[w], s.dirs[r] = d, d
	return d
}

func (s *Server) addFile(data []byte) (cap string, fresh bool) {
	cap = chkCap(data)
	if _, ok := s.files[cap]; ok {
		return cap, false
	}
	s.files[cap] = bytes.Clone(data)
	return cap, true
}

// werr is a WAPI error answer.
type werr struct {
	code int
	text string
}

func (e *werr) Error() string { return e.text }

func fail(code int, format string, args ...any) *werr {
	return &werr{code: code, text: fmt.Sprintf(format, args...)}
}

// node is a resolved object: a file or a directory, with the link that
// reached it (nil for the cap itself).
type node struct {
	filecap  string
	dir      *dirNode
	writable bool
	link     *edge
}

func (s *Server) capNode(c string) (*node, *werr) {
	if !wellFormed(c) {
		return nil, fail(http.StatusBadRequest, "Invalid cap: %q is not a cap this server understands", c)
	}
	if _, ok := s.files[c]; ok {
		return &node{filecap: c}, nil
	}
	if d, ok := s.dirs[c]; ok {
		return &node{dir: d, writable: c == d.writecap}, nil
	}
	return nil, fail(http.StatusGone, "NoSharesError: no shares could be found for %s", c)
}

func (s *Server) child(parent *node, name string) (*node, *werr) {
	if parent.dir == nil {
		return nil, fail(http.StatusBadRequest, "Files have no children named '%s'", name)
	}
	e, ok := parent.dir.children[name]
	if !ok {
		return nil, fail(http.StatusNotFound, "No such child: %s", name)
	}
	if e.rwcap == "" && strings.HasPrefix(e.rocap, "URI:CHK:") {
		return &node{filecap: e.rocap, link: e, writable: parent.writable}, nil
	}
	c := e.rocap
	writable := parent.writable && e.rwcap != ""
	if writable {
		c = e.rwcap
	}
	d, ok := s.dirs[c]
	if !ok {
		return nil, fail(http.StatusGone, "UnrecoverableFileError: the directory %s could not be retrieved", name)
	}
	return &node{dir: d, writable: writable, link: e}, nil
}

func (s *Server) walk(n *node, segs []string) (*node, *werr) {
	for _, name := range segs {
		var err *werr
		if n, err = s.child(n, name); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// ensureDir walks segs from n, creating missing directories (mkdir -p).
func (s *Server) ensureDir(n *node, segs []string) (*node, *werr) {
	for _, name := range segs {
		c, err := s.child(n, name)
		switch {
		case err != nil && err.code == http.StatusNotFound:
			if !n.writable {
				return nil, readOnly()
			}
			d := s.mkdir()
			s.link(n.dir, name, d.writecap, d.readcap)
			c, err = s.child(n, name)
		case err != nil:
			return nil, err
		case c.dir == nil:
			return nil, fail(http.StatusConflict, "Unable to create directory '%s': a file was in the way", name)
		}
		if err != nil {
			return nil, err
		}
		n = c
	}
	return n, nil
}

func readOnly() *werr {
	return fail(http.StatusForbidden, "NotWriteableError: this directory is read-only (reached through a read-only cap)")
}

// link sets name in d to the given caps, keeping linkcrtime when the name
// already existed and updating linkmotime. It reports whether the link is new.
func (s *Server) link(d *dirNode, name, rw, ro string) bool {
	now := float64(time.Now().UnixNano()) / 1e9
	old, ok := d.children[name]
	e := &edge{rwcap: rw, rocap: ro, crtime: now, motime: now}
	if ok {
		e.crtime = old.crtime
	}
	d.children[name] = e
	return !ok
}

// capsOf returns the caps to link for cap c: write and read slots.
func (s *Server) capsOf(c string) (rw, ro string, werr *werr) {
	if !wellFormed(c) {
		return "", "", fail(http.StatusBadRequest, "Invalid cap: %q is not a cap this server understands", c)
	}
	if _, ok := s.files[c]; ok {
		return "", c, nil
	}
	d, ok := s.dirs[c]
	if !ok {
		return "", "", fail(http.StatusGone, "NoSharesError: no shares could be found for %s", c)
	}
	if c == d.writecap {
		return d.writecap, d.readcap, nil
	}
	return "", d.readcap, nil
}

// ServeHTTP implements the WAPI subset described in the package comment.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.RequestURI())
	status, hdr, out, content := s.serve(r, body)
	s.mu.Unlock()
	if content != nil {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
		return
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(status)
	io.WriteString(w, out)
}

// serve runs under s.mu. It returns either a status, headers and body, or
// file contents to be served with Range support.
func (s *Server) serve(r *http.Request, body []byte) (int, http.Header, string, []byte) {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	if len(segs) < 2 || segs[0] != "" || (segs[1] != "uri" && segs[1] != "cap") {
		return http.StatusNotFound, nil, "only /uri is served by this double", nil
	}
	q := r.URL.Query()
	t := strings.TrimSpace(q.Get("t"))
	if len(segs) == 2 || (len(segs) == 3 && segs[2] == "") {
		return s.serveRoot(r.Method, t, body)
	}
	names := make([]string, 0, len(segs)-3)
	for i, raw := range segs[2:] {
		v, err := url.PathUnescape(raw)
		if err != nil {
			return http.StatusBadRequest, nil, fmt.Sprintf("bad URL escaping in %q", raw), nil
		}
		if i == 0 {
			names = append(names, v)
			continue
		}
		if v == "" {
			if i == len(segs)-3 { // one trailing slash is allowed
				break
			}
			return http.StatusBadRequest, nil, "The webapi does not allow empty pathname components, i.e. a double slash", nil
		}
		names = append(names, v)
	}
	root, werr := s.capNode(names[0])
	if werr != nil {
		return werr.code, nil, werr.text, nil
	}
	var (
		status  int
		out     string
		content []byte
		hdr     http.Header
	)
	path := names[1:]
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		status, hdr, out, content, werr = s.get(root, path, t)
	case http.MethodPut:
		status, out, werr = s.put(root, path, t, q, body)
	case http.MethodPost:
		status, out, werr = s.post(root, path, t, q)
	case http.MethodDelete:
		status, out, werr = s.del(root, path)
	default:
		werr = fail(http.StatusNotImplemented, "I don't know how to treat a %s request.", r.Method)
	}
	if werr != nil {
		return werr.code, nil, werr.text, nil
	}
	return status, hdr, out, content
}

func (s *Server) serveRoot(method, t string, body []byte) (int, http.Header, string, []byte) {
	switch {
	case (method == http.MethodPost || method == http.MethodPut) && t == "mkdir":
		return http.StatusOK, nil, s.mkdir().writecap, nil
	case method == http.MethodPut && t == "":
		c, fresh := s.addFile(body)
		if fresh {
			return http.StatusCreated, nil, c, nil
		}
		return http.StatusOK, nil, c, nil
	case method == http.MethodGet:
		return http.StatusBadRequest, nil, "GET /uri requires uri=", nil
	}
	return http.StatusBadRequest, nil, fmt.Sprintf("%s /uri with t=%q is not supported", method, t), nil
}

func (s *Server) get(root *node, path []string, t string) (int, http.Header, string, []byte, *werr) {
	n, err := s.walk(root, path)
	if err != nil {
		return 0, nil, "", nil, err
	}
	switch t {
	case "":
		if n.dir != nil {
			return http.StatusOK, http.Header{"Content-Type": {"text/html; charset=utf-8"}}, s.html(n), nil, nil
		}
		return 0, nil, "", s.files[n.filecap], nil
	case "json":
		b, _ := json.Marshal(s.describe(n, len(path) > 0, true))
		return http.StatusOK, http.Header{"Content-Type": {"application/json"}}, string(b), nil, nil
	case "uri":
		return http.StatusOK, nil, s.strongCap(n), nil, nil
	case "readonly-uri":
		if n.dir != nil {
			return http.StatusOK, nil, n.dir.readcap, nil, nil
		}
		return http.StatusOK, nil, n.filecap, nil, nil
	}
	return 0, nil, "", nil, fail(http.StatusBadRequest, "GET unknown t=%s", t)
}

func (s *Server) strongCap(n *node) string {
	switch {
	case n.dir == nil:
		return n.filecap
	case n.writable:
		return n.dir.writecap
	}
	return n.dir.readcap
}

// describe renders n as t=json does: [type, props]; withMeta adds the link
// metadata (files reached by a path); withChildren lists a directory.
func (s *Server) describe(n *node, withMeta, withChildren bool) []any {
	props := map[string]any{}
	kind := "filenode"
	if n.dir == nil {
		props["ro_uri"] = n.filecap
		props["verify_uri"] = chkVerifier(n.filecap)
		props["size"] = len(s.files[n.filecap])
		props["mutable"] = false
		props["format"] = "CHK"
	} else {
		kind = "dirnode"
		if n.writable {
			props["rw_uri"] = n.dir.writecap
		}
		props["ro_uri"] = n.dir.readcap
		props["verify_uri"] = n.dir.verifycap
		props["mutable"] = true
		props["format"] = "SDMF"
		if withChildren {
			children := map[string]any{}
			for name := range n.dir.children {
				c, err := s.child(n, name)
				if err != nil {
					continue
				}
				children[name] = s.describe(c, true, false)
			}
			props["children"] = children
		}
	}
	if withMeta && n.link != nil && (n.dir == nil || !withChildren) {
		props["metadata"] = map[string]any{"tahoe": map[string]any{
			"linkcrtime": n.link.crtime, "linkmotime": n.link.motime,
		}}
	}
	return []any{kind, props}
}

func (s *Server) html(n *node) string {
	names := make([]string, 0, len(n.dir.children))
	for name := range n.dir.children {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("<html><body><ul>\n")
	for _, name := range names {
		fmt.Fprintf(&b, "<li>%s</li>\n", html.EscapeString(name))
	}
	b.WriteString("</ul></body></html>\n")
	return b.String()
}

// parseReplace reads replace=: true (default), false, or only-files.
func parseReplace(q url.Values) (string, *werr) {
	v := strings.ToLower(q.Get("replace"))
	switch v {
	case "", "true", "t", "1", "on":
		return "true", nil
	case "false", "f", "0", "off":
		return "false", nil
	case "only-files":
		return v, nil
	}
	return "", fail(http.StatusBadRequest, "invalid replace= argument: '%s'", q.Get("replace"))
}

// parentOf resolves the directory that will hold path's last name,
// creating intermediate directories, and checks it can be written.
func (s *Server) parentOf(root *node, path []string) (*node, *werr) {
	parent, err := s.ensureDir(root, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	if !parent.writable {
		return nil, readOnly()
	}
	return parent, nil
}

func checkReplace(existing *edge, replace string, existingIsDir bool) *werr {
	if existing == nil {
		return nil
	}
	if replace == "false" || (replace == "only-files" && existingIsDir) {
		return fail(http.StatusConflict, "There was already a child by that name, and you asked me to not replace it.")
	}
	return nil
}

func (s *Server) put(root *node, path []string, t string, q url.Values, body []byte) (int, string, *werr) {
	if t == "mkdir" {
		return s.mkdirP(root, path)
	}
	if t != "" && t != "uri" {
		return 0, "", fail(http.StatusBadRequest, "PUT unknown t=%s", t)
	}
	if len(path) == 0 {
		return 0, "", fail(http.StatusBadRequest, "PUT to a directory cap needs a child name (or t=mkdir)")
	}
	replace, werr := parseReplace(q)
	if werr != nil {
		return 0, "", werr
	}
	parent, werr := s.parentOf(root, path)
	if werr != nil {
		return 0, "", werr
	}
	name := path[len(path)-1]
	existing := parent.dir.children[name]
	existingIsDir := existing != nil && !strings.HasPrefix(existing.rocap, "URI:CHK:")
	if werr := checkReplace(existing, replace, existingIsDir); werr != nil {
		return 0, "", werr
	}
	var rw, ro, answer string
	if t == "uri" {
		c := strings.TrimSpace(string(body))
		if rw, ro, werr = s.capsOf(c); werr != nil {
			return 0, "", werr
		}
		answer = c
	} else {
		if existingIsDir {
			return 0, "", fail(http.StatusBadRequest, "PUT to a directory: cannot replace directory '%s' with file contents", name)
		}
		ro, _ = s.addFile(body)
		answer = ro
	}
	if s.link(parent.dir, name, rw, ro) {
		return http.StatusCreated, answer, nil
	}
	return http.StatusOK, answer, nil
}

func (s *Server) mkdirP(root *node, path []string) (int, string, *werr) {
	if len(path) == 0 {
		if root.dir == nil {
			return 0, "", fail(http.StatusBadRequest, "t=mkdir on a file cap")
		}
		return http.StatusOK, s.strongCap(root), nil
	}
	n, werr := s.ensureDir(root, path)
	if werr != nil {
		return 0, "", werr
	}
	return http.StatusOK, s.strongCap(n), nil
}

func (s *Server) post(root *node, path []string, t string, q url.Values) (int, string, *werr) {
	if t == "mkdir" {
		if name := q.Get("name"); name != "" {
			if strings.Contains(name, "/") {
				return 0, "", fail(http.StatusBadRequest, "name= may not contain a slash")
			}
			path = append(path[:len(path):len(path)], name)
		}
		return s.mkdirP(root, path)
	}
	dir, werr := s.walk(root, path)
	if werr != nil {
		return 0, "", werr
	}
	if dir.dir == nil {
		return 0, "", fail(http.StatusBadRequest, "POST t=%s needs a directory", t)
	}
	switch t {
	case "rename":
		from, to := q.Get("from_name"), q.Get("to_name")
		if from == "" || to == "" {
			return 0, "", fail(http.StatusBadRequest, "rename needs from_name= and to_name=")
		}
		if strings.Contains(from, "/") || strings.Contains(to, "/") {
			return 0, "", fail(http.StatusBadRequest, "from_name= and to_name= may not contain a slash")
		}
		replace, werr := parseReplace(q)
		if werr != nil {
			return 0, "", werr
		}
		if !dir.writable {
			return 0, "", readOnly()
		}
		e, ok := dir.dir.children[from]
		if !ok {
			return 0, "", fail(http.StatusNotFound, "No such child: %s", from)
		}
		if from == to {
			return http.StatusOK, "OK", nil
		}
		existing := dir.dir.children[to]
		if werr := checkReplace(existing, replace, existing != nil && !strings.HasPrefix(existing.rocap, "URI:CHK:")); werr != nil {
			return 0, "", werr
		}
		delete(dir.dir.children, from)
		dir.dir.children[to] = e // metadata preserved
		return http.StatusOK, "OK", nil
	case "unlink", "delete":
		name := q.Get("name")
		if name == "" {
			return 0, "", fail(http.StatusBadRequest, "t=%s needs name=", t)
		}
		if !dir.writable {
			return 0, "", readOnly()
		}
		e, ok := dir.dir.children[name]
		if !ok {
			return 0, "", fail(http.StatusNotFound, "No such child: %s", name)
		}
		delete(dir.dir.children, name)
		return http.StatusOK, edgeCap(e), nil
	}
	return 0, "", fail(http.StatusBadRequest, "POST unknown t=%s", t)
}

func edgeCap(e *edge) string {
	if e.rwcap != "" {
		return e.rwcap
	}
	return e.rocap
}

func (s *Server) del(root *node, path []string) (int, string, *werr) {
	if len(path) == 0 {
		return 0, "", fail(http.StatusBadRequest, "DELETE needs a child name: a cap itself cannot be unlinked")
	}
	parent, werr := s.walk(root, path[:len(path)-1])
	if werr != nil {
		return 0, "", werr
	}
	name := path[len(path)-1]
	if parent.dir == nil {
		return 0, "", fail(http.StatusBadRequest, "Files have no children named '%s'", name)
	}
	e, ok := parent.dir.children[name]
	if !ok {
		return 0, "", fail(http.StatusNotFound, "No such child: %s", name)
	}
	if !parent.writable {
		return 0, "", readOnly()
	}
	delete(parent.dir.children, name)
	return http.StatusOK, edgeCap(e), nil
}
