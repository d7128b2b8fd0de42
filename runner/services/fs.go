package services

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"

	"github.com/jobx/jobx/sharedfs"
)

// fsRoutes serve a workflow's shared filesystem to its handlers:
//
// The path is a query parameter, so that the workflow root's own rules (not
// URL cleaning) judge paths such as "../x":
//
//	GET    /v1/fs?path=P            read a file
//	GET    /v1/fs?path=P&op=ls      list a directory (JSON)
//	GET    /v1/fs?path=P&op=stat    stat (JSON; 404 when missing)
//	PUT    /v1/fs?path=P            write a file (parents are created)
//	DELETE /v1/fs?path=P            rm a file
//	POST   /v1/fs?path=P&op=mkdir|rmdir
//	POST   /v1/fs?path=P&op=cp|cpr|mv&to=Q
func (s *Endpoint) fsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/fs", s.fsGet)
	mux.HandleFunc("PUT /v1/fs", s.fsPut)
	mux.HandleFunc("DELETE /v1/fs", s.fsDelete)
	mux.HandleFunc("POST /v1/fs", s.fsPost)
}

func (s *Endpoint) fsOf(w http.ResponseWriter, r *http.Request) (*sharedfs.FS, string) {
	g := s.auth(w, r)
	if g == nil {
		return nil, ""
	}
	var fsys *sharedfs.FS
	var err error
	if s.fs != nil {
		fsys, err = s.fs.Open(g.Workflow)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return nil, ""
	}
	if fsys == nil {
		http.Error(w, fmt.Sprintf("workflow %s has no shared filesystem configured", g.Workflow), http.StatusNotFound)
		return nil, ""
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		p = "/"
	}
	return fsys, p
}

func fsError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		status = http.StatusNotFound
	case errors.Is(err, fs.ErrExist):
		status = http.StatusConflict
	case errors.Is(err, fs.ErrPermission):
		status = http.StatusForbidden
	case errors.Is(err, sharedfs.ErrBadPath), errors.Is(err, fs.ErrInvalid):
		status = http.StatusBadRequest
	}
	http.Error(w, err.Error(), status)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

type fsEntry struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	IsDir   bool   `json:"is_dir"`
	ModTime int64  `json:"mtime"`
}

func entry(e sharedfs.EntryStat) fsEntry {
	return fsEntry{Name: e.Name, Size: e.Size, Mode: uint32(e.Mode.Perm()), IsDir: e.IsDir, ModTime: e.ModTime.Unix()}
}

func (s *Endpoint) fsGet(w http.ResponseWriter, r *http.Request) {
	fsys, p := s.fsOf(w, r)
	if fsys == nil {
		return
	}
	switch r.URL.Query().Get("op") {
	case "ls":
		es, err := fsys.Ls(p)
		if err != nil {
			fsError(w, err)
			return
		}
		out := make([]fsEntry, len(es))
		for i, e := range es {
			out[i] = entry(e)
		}
		writeJSON(w, out)
	case "stat":
		e, err := fsys.Stat(p)
		if err != nil {
			fsError(w, err)
			return
		}
		writeJSON(w, entry(e))
	case "", "read":
		f, err := fsys.Open(p, os.O_RDONLY, 0)
		if err != nil {
			fsError(w, err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, f)
	default:
		http.Error(w, fmt.Sprintf("unknown op %q (want ls, stat or read)", r.URL.Query().Get("op")), http.StatusBadRequest)
	}
}

func (s *Endpoint) fsPut(w http.ResponseWriter, r *http.Request) {
	fsys, p := s.fsOf(w, r)
	if fsys == nil {
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := fsys.WriteFile(p, data, 0o644); err != nil {
		fsError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Endpoint) fsDelete(w http.ResponseWriter, r *http.Request) {
	fsys, p := s.fsOf(w, r)
	if fsys == nil {
		return
	}
	if err := fsys.Rm(p); err != nil {
		fsError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Endpoint) fsPost(w http.ResponseWriter, r *http.Request) {
	fsys, p := s.fsOf(w, r)
	if fsys == nil {
		return
	}
	to := r.URL.Query().Get("to")
	var err error
	switch op := r.URL.Query().Get("op"); op {
	case "mkdir":
		err = fsys.Mkdir(p)
	case "rmdir":
		err = fsys.Rmdir(p)
	case "cp":
		err = fsys.Cp(p, to)
	case "cpr":
		err = fsys.Cpr(p, to)
	case "mv":
		err = fsys.Mv(p, to)
	default:
		http.Error(w, fmt.Sprintf("unknown op %q (want mkdir, rmdir, cp, cpr or mv)", op), http.StatusBadRequest)
		return
	}
	if err != nil {
		fsError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
