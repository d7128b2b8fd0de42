package sharedfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

var (
	_ afero.File = (*tahoeReader)(nil)
	_ afero.File = (*tahoeWriter)(nil)
	_ afero.File = (*tahoeDir)(nil)
)

// tahoeReader reads a Tahoe file, streaming sequential reads from one GET
// and reopening with a Range header after a Seek.
type tahoeReader struct {
	t    *Tahoe
	name string
	p    string
	info tahoeInfo

	mu     sync.Mutex // guards the fields below
	off    int64
	body   io.ReadCloser // open stream positioned at off, or nil
	cancel context.CancelFunc
	closed bool
}

func (r *tahoeReader) err(op string, err error) error {
	return &fs.PathError{Op: op, Path: r.p, Err: err}
}

// get starts a GET of the file from byte off, for n bytes (n < 0: to the end).
func (r *tahoeReader) get(off, n int64) (io.ReadCloser, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.t.timeout)
	hdr := http.Header{}
	if off > 0 || n >= 0 {
		if n >= 0 {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		} else {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-", off))
		}
	}
	resp, err := r.t.send(ctx, http.MethodGet, r.p, nil, nil, hdr)
	if err != nil {
		cancel()
		return nil, nil, r.err("read", err)
	}
	if err := checkStatus(http.MethodGet, resp, []int{http.StatusOK, http.StatusPartialContent}); err != nil {
		resp.Body.Close()
		cancel()
		return nil, nil, r.err("read", err)
	}
	body := resp.Body
	if resp.StatusCode == http.StatusOK && off > 0 { // the gateway ignored Range
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			body.Close()
			cancel()
			return nil, nil, r.err("read", err)
		}
	}
	return body, cancel, nil
}

func (r *tahoeReader) dropBody() {
	if r.body != nil {
		r.body.Close()
		r.cancel()
		r.body, r.cancel = nil, nil
	}
}

func (r *tahoeReader) Read(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, r.err("read", fs.ErrClosed)
	}
	if len(b) == 0 {
		return 0, nil
	}
	if r.off >= r.info.Size() {
		return 0, io.EOF
	}
	if r.body == nil {
		body, cancel, err := r.get(r.off, -1)
		if err != nil {
			return 0, err
		}
		r.body, r.cancel = body, cancel
	}
	n, err := r.body.Read(b)
	r.off += int64(n)
	if err == io.EOF {
		r.dropBody()
		if r.off < r.info.Size() {
			err = r.err("read", io.ErrUnexpectedEOF)
		}
	} else if err != nil {
		r.dropBody()
		err = r.err("read", err)
	}
	return n, err
}

func (r *tahoeReader) ReadAt(b []byte, off int64) (int, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, r.err("read", fs.ErrClosed)
	}
	if off < 0 {
		return 0, r.err("readat", errors.New("negative offset"))
	}
	if off >= r.info.Size() {
		return 0, io.EOF
	}
	want := min(int64(len(b)), r.info.Size()-off)
	body, cancel, err := r.get(off, want)
	if err != nil {
		return 0, err
	}
	defer cancel()
	defer body.Close()
	n, err := io.ReadFull(body, b[:want])
	if err != nil {
		return n, r.err("readat", err)
	}
	if int64(n) < int64(len(b)) {
		return n, io.EOF
	}
	return n, nil
}

func (r *tahoeReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, r.err("seek", fs.ErrClosed)
	}
	abs, err := seekOffset(r.off, r.info.Size(), offset, whence)
	if err != nil {
		return 0, r.err("seek", err)
	}
	if abs != r.off {
		r.dropBody()
		r.off = abs
	}
	return abs, nil
}

func seekOffset(cur, size, offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = cur + offset
	case io.SeekEnd:
		abs = size + offset
	default:
		return 0, fmt.Errorf("invalid whence %d: %w", whence, fs.ErrInvalid)
	}
	if abs < 0 {
		return 0, fmt.Errorf("negative position: %w", fs.ErrInvalid)
	}
	return abs, nil
}

func (r *tahoeReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err("close", fs.ErrClosed)
	}
	r.closed = true
	r.dropBody()
	return nil
}

func (r *tahoeReader) Name() string                       { return r.name }
func (r *tahoeReader) Stat() (os.FileInfo, error)         { return r.info, nil }
func (r *tahoeReader) Sync() error                        { return nil }
func (r *tahoeReader) Write([]byte) (int, error)          { return 0, r.err("write", syscall.EBADF) }
func (r *tahoeReader) WriteAt([]byte, int64) (int, error) { return 0, r.err("write", syscall.EBADF) }
func (r *tahoeReader) WriteString(string) (int, error)    { return 0, r.err("write", syscall.EBADF) }
func (r *tahoeReader) Truncate(int64) error               { return r.err("truncate", syscall.EBADF) }
func (r *tahoeReader) Readdir(int) ([]os.FileInfo, error) {
	return nil, r.err("readdir", syscall.ENOTDIR)
}
func (r *tahoeReader) Readdirnames(int) ([]string, error) {
	return nil, r.err("readdir", syscall.ENOTDIR)
}

// tahoeWriter is a file opened for writing: its contents live in memory
// and are uploaded by Sync and Close.
type tahoeWriter struct {
	t        *Tahoe
	name     string
	p        string
	readable bool
	append   bool

	mu      sync.Mutex // guards the fields below
	buf     []byte
	off     int64
	excl    bool // the first upload must not replace (O_EXCL)
	dirty   bool
	closed  bool
	modTime time.Time
}

func (w *tahoeWriter) err(op string, err error) error {
	return &fs.PathError{Op: op, Path: w.p, Err: err}
}

func (w *tahoeWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, w.err("write", fs.ErrClosed)
	}
	if w.append {
		w.off = int64(len(w.buf))
	}
	n := w.writeAt(b, w.off)
	w.off += int64(n)
	return n, nil
}

func (w *tahoeWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func (w *tahoeWriter) WriteAt(b []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return 0, w.err("write", fs.ErrClosed)
	case w.append:
		return 0, w.err("writeat", errors.New("os: invalid use of WriteAt on file opened with O_APPEND"))
	case off < 0:
		return 0, w.err("writeat", errors.New("negative offset"))
	}
	return w.writeAt(b, off), nil
}

func (w *tahoeWriter) writeAt(b []byte, off int64) int {
	if end := off + int64(len(b)); end > int64(len(w.buf)) {
		w.buf = append(w.buf, make([]byte, end-int64(len(w.buf)))...)
	}
	copy(w.buf[off:], b)
	w.dirty = true
	w.modTime = time.Now()
	return len(b)
}

func (w *tahoeWriter) Read(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.readable {
		return 0, w.err("read", syscall.EBADF)
	}
	if w.closed {
		return 0, w.err("read", fs.ErrClosed)
	}
	if w.off >= int64(len(w.buf)) {
		return 0, io.EOF
	}
	n := copy(b, w.buf[w.off:])
	w.off += int64(n)
	return n, nil
}

func (w *tahoeWriter) ReadAt(b []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.readable {
		return 0, w.err("read", syscall.EBADF)
	}
	if w.closed {
		return 0, w.err("read", fs.ErrClosed)
	}
	if off < 0 {
		return 0, w.err("readat", errors.New("negative offset"))
	}
	if off >= int64(len(w.buf)) {
		return 0, io.EOF
	}
	n := copy(b, w.buf[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (w *tahoeWriter) Seek(offset int64, whence int) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, w.err("seek", fs.ErrClosed)
	}
	abs, err := seekOffset(w.off, int64(len(w.buf)), offset, whence)
	if err != nil {
		return 0, w.err("seek", err)
	}
	w.off = abs
	return abs, nil
}

func (w *tahoeWriter) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err("truncate", fs.ErrClosed)
	}
	if size < 0 {
		return w.err("truncate", fs.ErrInvalid)
	}
	if size <= int64(len(w.buf)) {
		w.buf = w.buf[:size]
	} else {
		w.buf = append(w.buf, make([]byte, size-int64(len(w.buf)))...)
	}
	w.dirty = true
	w.modTime = time.Now()
	return nil
}

func (w *tahoeWriter) Stat() (os.FileInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return tahoeInfo{name: infoName(w.p), node: &TahoeNode{
		Type: "filenode", Size: int64(len(w.buf)), LinkModified: w.modTime, writable: true,
	}}, nil
}

// Sync uploads the contents if they changed since the last upload.
func (w *tahoeWriter) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err("sync", fs.ErrClosed)
	}
	return w.flush()
}

func (w *tahoeWriter) flush() error {
	if !w.dirty {
		return nil
	}
	if err := w.t.upload("write", w.p, w.buf, w.excl); err != nil {
		return err
	}
	w.dirty, w.excl = false, false
	return nil
}

// Close uploads the contents (see Sync) and releases the buffer. A failed
// upload is reported and the file is closed all the same.
func (w *tahoeWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err("close", fs.ErrClosed)
	}
	err := w.flush()
	w.closed, w.buf = true, nil
	return err
}

func (w *tahoeWriter) Name() string { return w.name }
func (w *tahoeWriter) Readdir(int) ([]os.FileInfo, error) {
	return nil, w.err("readdir", syscall.ENOTDIR)
}
func (w *tahoeWriter) Readdirnames(int) ([]string, error) {
	return nil, w.err("readdir", syscall.ENOTDIR)
}

// tahoeDir is a directory opened for listing; the listing is taken at Open.
type tahoeDir struct {
	name    string
	info    tahoeInfo
	mu      sync.Mutex // guards pos and closed
	entries []os.FileInfo
	pos     int
	closed  bool
}

func (d *tahoeDir) err(op string, err error) error {
	return &fs.PathError{Op: op, Path: d.name, Err: err}
}

func (d *tahoeDir) Readdir(count int) ([]os.FileInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, d.err("readdir", fs.ErrClosed)
	}
	rest := d.entries[d.pos:]
	if count <= 0 {
		d.pos = len(d.entries)
		return append([]os.FileInfo(nil), rest...), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n := min(count, len(rest))
	d.pos += n
	return append([]os.FileInfo(nil), rest[:n]...), nil
}

func (d *tahoeDir) Readdirnames(n int) ([]string, error) {
	infos, err := d.Readdir(n)
	names := make([]string, len(infos))
	for i, fi := range infos {
		names[i] = fi.Name()
	}
	return names, err
}

func (d *tahoeDir) Seek(offset int64, whence int) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if offset != 0 || whence != io.SeekStart {
		return 0, d.err("seek", fs.ErrInvalid)
	}
	d.pos = 0
	return 0, nil
}

func (d *tahoeDir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return d.err("close", fs.ErrClosed)
	}
	d.closed = true
	return nil
}

func (d *tahoeDir) Name() string                       { return d.name }
func (d *tahoeDir) Stat() (os.FileInfo, error)         { return d.info, nil }
func (d *tahoeDir) Sync() error                        { return nil }
func (d *tahoeDir) Read([]byte) (int, error)           { return 0, d.err("read", syscall.EISDIR) }
func (d *tahoeDir) ReadAt([]byte, int64) (int, error)  { return 0, d.err("read", syscall.EISDIR) }
func (d *tahoeDir) Write([]byte) (int, error)          { return 0, d.err("write", syscall.EBADF) }
func (d *tahoeDir) WriteAt([]byte, int64) (int, error) { return 0, d.err("write", syscall.EBADF) }
func (d *tahoeDir) WriteString(string) (int, error)    { return 0, d.err("write", syscall.EBADF) }
func (d *tahoeDir) Truncate(int64) error               { return d.err("truncate", syscall.EBADF) }
