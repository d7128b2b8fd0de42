package services

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

// startServices starts a services endpoint on a real etcd and returns it
// with the token of a writable grant on session "m" of workflow "wf".
func startServices(t *testing.T) (*Endpoint, string) {
	t.Helper()
	_, cli := testenv.Etcd(t)
	dir, err := os.MkdirTemp("", "jobx-svc") // socket paths hold at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	svc, err := Start(Options{Store: kvmodel.NewStore(cli), Socket: filepath.Join(dir, "s.sock"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	token, revoke := svc.Issue(&Grant{Workflow: "wf", Session: "m", Writable: true})
	t.Cleanup(revoke)
	return svc, token
}

// rawCall sends head and then body on a fresh connection, as a client that
// writes its whole request before reading (Python's http.client) does: a
// server that closed early makes a write fail. It returns the answer.
func rawCall(t *testing.T, svc *Endpoint, head, body string) (int, string) {
	t.Helper()
	conn, err := net.Dial("unix", svc.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatalf("writing the request head: %v", err)
	}
	// No body, no write: a client waiting for 100 Continue sends none, and
	// the server, having answered, may have closed the connection already.
	if body != "" {
		if _, err := io.WriteString(conn, body); err != nil {
			t.Fatalf("writing the request body: %v (the server did not read it)", err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(text))
}

func putHead(token, key string, header string) string {
	return "PUT /v1/session/" + key + " HTTP/1.1\r\nHost: jobx\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\n" + header + "\r\n"
}

func TestSessionValueOverItsLimitIsRefusedNamingItAndTheBodyIsRead(t *testing.T) {
	svc, token := startServices(t)
	limit := kvmodel.MaxSessionValueBytes
	if code, text := rawCall(t, svc, putHead(token, "a", "Content-Length: 1\r\n"), "1"); code != http.StatusNoContent {
		t.Fatalf("setting a small value: %d %s", code, text)
	}
	atLimit := `"` + strings.Repeat("x", limit-2) + `"`
	if code, text := rawCall(t, svc, putHead(token, "full", fmt.Sprintf("Content-Length: %d\r\n", len(atLimit))), atLimit); code != http.StatusNoContent {
		t.Fatalf("a value of exactly %d bytes: %d %s", limit, code, text)
	}

	big := strings.Repeat("x", 10<<20)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 3<<20, big[:3<<20])
	for _, tc := range []struct {
		name, header, body string
		size               int
	}{
		{"with a length", fmt.Sprintf("Content-Length: %d\r\n", len(big)), big, len(big)},
		{"chunked", "Transfer-Encoding: chunked\r\n", chunked, 3 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, text := rawCall(t, svc, putHead(token, "k", tc.header), tc.body)
			want := fmt.Sprintf(`session value of key "k" is %d bytes, over the %d-byte session value limit`, tc.size, limit)
			if code != http.StatusRequestEntityTooLarge || text != want {
				t.Fatalf("want 413 %q, got %d %q", want, code, text)
			}
		})
	}

	t.Run("a client waiting for 100 Continue is answered at once", func(t *testing.T) {
		head := putHead(token, "k", fmt.Sprintf("Content-Length: %d\r\nExpect: 100-continue\r\n", len(big)))
		code, text := rawCall(t, svc, head, "")
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(text, "session value limit") {
			t.Fatalf("want 413 naming the limit, got %d %q", code, text)
		}
	})

	// Nothing already stored was lost, and nothing over the limit was stored.
	list, err := listSession(t.Context(), svc.store, "wf", "m")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range list {
		keys = append(keys, string(kv[0]))
	}
	if strings.Join(keys, ",") != `"a","full"` || string(list[0][1]) != "1" || len(list[1][1]) != limit {
		t.Fatalf("session after the refused values: keys %v", keys)
	}
}
