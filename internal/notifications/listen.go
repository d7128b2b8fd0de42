package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Listen serves HTTP notifications on ln until ctx ends and prints one line
// per notification to out, in JobX's mr_http_notification_listen format:
// created time, name, level, message. It accepts jobx's JSON events and
// JobX's form-encoded LogRecords.
func Listen(ctx context.Context, ln net.Listener, out io.Writer) error {
	var mu sync.Mutex
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a notification", http.StatusMethodNotAllowed)
			return
		}
		e, err := decode(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		created := time.Unix(0, int64(e.Created*1e9)).Local().Format("2006-01-02 15:04:05")
		name := e.Name
		if len(name) > 40 {
			name = name[:40]
		}
		mu.Lock()
		fmt.Fprintf(out, "%s  %-40s  %9s  %s\n", created, name, e.Level, e.Message)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "OK\n")
	})}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func decode(r *http.Request) (Event, error) {
	var e Event
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return e, err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" || (mt == "" && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{"))) {
		return e, json.Unmarshal(body, &e)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return e, err
	}
	e.Name, e.Level, e.Message = form.Get("name"), form.Get("levelname"), form.Get("msg")
	e.Created, _ = strconv.ParseFloat(form.Get("created"), 64)
	return e, nil
}
