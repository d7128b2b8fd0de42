// Package services is the endpoint handlers reach from inside their
// sandbox: an HTTP server on a unix socket (bind-mountable into containers,
// reachable without any network) serving an invocation its session, its
// workflow's shared filesystem and NOTIFY. The runner starts one Endpoint
// and issues each invocation a token for as long as it runs:
//
//	ep, err := services.Start(services.Options{Store: store, Filesystems: fss, Socket: sock, Log: log})
//	token, revoke := ep.Issue(&services.Grant{Workflow: wf, Session: inv, Writable: true})
//	defer revoke()
//	// the handler calls ep.Socket() with "Authorization: Bearer <token>"
//	ep.Close()
package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Endpoint is the services endpoint. Each invocation gets a token that
// grants exactly its own session (read-write for a mapper and its combiner,
// read-only for the reducer of that map invocation) for as long as it runs.
// Issue is safe for concurrent use; the caller of Start must call Close.
//
//	GET  /v1/session        the session as [[key, value], ...], by key
//	GET  /v1/session/<key>  one value; 404 when unset
//	PUT  /v1/session/<key>  set a value (JSON body, at most
//	                        kvmodel.MaxSessionValueBytes; 413 above)
//	POST /v1/notify         a notification from the handler (JSON body)
type Endpoint struct {
	store  *kvmodel.Store
	log    *slog.Logger
	notify func(ctx context.Context, g *Grant, body []byte)
	fs     *Filesystems
	sock   string
	ln     net.Listener
	srv    *http.Server

	mu     sync.RWMutex // guards grants
	grants map[string]*Grant

	closeOnce sync.Once
}

// Grant is what one invocation's token allows.
type Grant struct {
	Workflow   string
	Session    string // the map invocation whose session this is
	Writable   bool
	Request    string
	Handler    string
	Invocation string
}

// Options configure an Endpoint.
type Options struct {
	Store *kvmodel.Store
	// Filesystems opens the workflows' shared filesystems; nil: none.
	Filesystems *Filesystems
	// Socket is the unix socket's path; a file there is replaced.
	Socket string
	Log    *slog.Logger
	// Notify receives the handlers' NOTIFY bodies (valid JSON); nil drops
	// them.
	Notify func(ctx context.Context, g *Grant, body []byte)
}

// Start listens on o.Socket and serves until Close.
func Start(o Options) (*Endpoint, error) {
	os.Remove(o.Socket)
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		return nil, fmt.Errorf("services endpoint: %w", err)
	}
	// Sandboxed handlers may run as another user.
	os.Chmod(o.Socket, 0o777)
	s := &Endpoint{store: o.Store, fs: o.Filesystems, log: o.Log, notify: o.Notify, sock: o.Socket, ln: ln, grants: map[string]*Grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/session", s.list)
	mux.HandleFunc("GET /v1/session/{key}", s.get)
	mux.HandleFunc("PUT /v1/session/{key}", s.set)
	mux.HandleFunc("POST /v1/notify", s.postNotify)
	s.fsRoutes(mux)
	s.srv = &http.Server{Handler: drainBodies(mux), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// drainBodies reads what a handler left of a request's body before the
// answer goes out. Without it the server answers a refused upload (a
// session value over its limit, a bad token) and closes the connection
// while the client is still sending, and the client sees a broken pipe
// instead of the answer. A client that keeps sending is cut off after
// maxDrain. A client that waits for "100 Continue" (curl, for large
// bodies) and was answered before any read has sent nothing to drain.
func drainBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &readTracker{ReadCloser: r.Body}
		r.Body = body
		h.ServeHTTP(w, r)
		r.Body = body.ReadCloser // the server's own clean-up looks at its type
		if !body.read && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
			return
		}
		discard(w, body.ReadCloser)
	})
}

// discard reads body to its end, for at most maxDrain, and returns the
// bytes it read.
func discard(w http.ResponseWriter, body io.Reader) int64 {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(maxDrain))
	n, _ := io.Copy(io.Discard, body)
	return n
}

// readTracker records whether a body was read.
type readTracker struct {
	io.ReadCloser
	read bool
}

func (t *readTracker) Read(p []byte) (int, error) {
	t.read = true
	return t.ReadCloser.Read(p)
}

// maxDrain bounds the time drainBodies spends on one body.
const maxDrain = 30 * time.Second

// Socket returns the path of the endpoint's unix socket.
func (s *Endpoint) Socket() string { return s.sock }

// Close stops serving (requests in progress get two seconds) and removes
// the socket. It is idempotent.
func (s *Endpoint) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
		os.Remove(s.sock)
	})
	return nil
}

// Issue registers a grant and returns its token and a func that revokes it.
func (s *Endpoint) Issue(g *Grant) (string, func()) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.grants[token] = g
	s.mu.Unlock()
	return token, func() {
		s.mu.Lock()
		delete(s.grants, token)
		s.mu.Unlock()
	}
}

func (s *Endpoint) auth(w http.ResponseWriter, r *http.Request) *Grant {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.RLock()
	g := s.grants[token]
	s.mu.RUnlock()
	if g == nil {
		http.Error(w, "unknown or expired invocation token", http.StatusUnauthorized)
	}
	return g
}

func (s *Endpoint) key(w http.ResponseWriter, r *http.Request, g *Grant) (string, bool) {
	key := r.PathValue("key")
	if err := kvmodel.ValidateName("session key", key); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return "", false
	}
	return kvmodel.SessionPrefix(g.Workflow, g.Session) + key, true
}

func (s *Endpoint) get(w http.ResponseWriter, r *http.Request) {
	g := s.auth(w, r)
	if g == nil {
		return
	}
	key, ok := s.key(w, r, g)
	if !ok {
		return
	}
	resp, err := s.store.Client().Get(r.Context(), key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if len(resp.Kvs) == 0 {
		http.Error(w, fmt.Sprintf("session key %q is not set", r.PathValue("key")), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.Kvs[0].Value)
}

func (s *Endpoint) set(w http.ResponseWriter, r *http.Request) {
	g := s.auth(w, r)
	if g == nil {
		return
	}
	if !g.Writable {
		http.Error(w, "the session is read-only for a reducer", http.StatusForbidden)
		return
	}
	key, ok := s.key(w, r, g)
	if !ok {
		return
	}
	name := r.PathValue("key")
	if err := kvmodel.CheckSessionValue(name, r.ContentLength); err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, kvmodel.MaxSessionValueBytes+1))
	if err != nil {
		http.Error(w, fmt.Sprintf("session value of key %q: %v", name, err), http.StatusBadRequest)
		return
	}
	if len(body) > kvmodel.MaxSessionValueBytes {
		// A body without a length: count what it holds.
		n := discard(w, r.Body)
		http.Error(w, kvmodel.CheckSessionValue(name, int64(len(body))+n).Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if !json.Valid(body) {
		http.Error(w, fmt.Sprintf("session value of key %q is not valid JSON", name), http.StatusBadRequest)
		return
	}
	if _, err := s.store.Client().Put(r.Context(), key, string(body)); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Endpoint) list(w http.ResponseWriter, r *http.Request) {
	g := s.auth(w, r)
	if g == nil {
		return
	}
	out, err := listSession(r.Context(), s.store, g.Workflow, g.Session)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// listSession returns a map invocation's session as [key, value] pairs,
// ordered by key.
func listSession(ctx context.Context, store *kvmodel.Store, wf, inv string) ([][2]json.RawMessage, error) {
	prefix := kvmodel.SessionPrefix(wf, inv)
	resp, err := store.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := [][2]json.RawMessage{}
	for _, kv := range resp.Kvs {
		k, _ := json.Marshal(strings.TrimPrefix(string(kv.Key), prefix))
		out = append(out, [2]json.RawMessage{k, kv.Value})
	}
	return out, nil
}

func (s *Endpoint) postNotify(w http.ResponseWriter, r *http.Request) {
	g := s.auth(w, r)
	if g == nil {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || !json.Valid(body) {
		http.Error(w, "a notification is a JSON object", http.StatusBadRequest)
		return
	}
	if s.notify != nil {
		s.notify(r.Context(), g, body)
	}
	w.WriteHeader(http.StatusNoContent)
}
