package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/kvmodel"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// respond runs respondErrors over a handler that fails with err.
func respond(t *testing.T, err error) (int, map[string]string) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(respondErrors)
	r.GET("/", func(c *gin.Context) { c.Error(err) })
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	var body struct {
		Error map[string]string `json:"error"`
	}
	if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil {
		t.Fatalf("%s: %v", w.Body, jerr)
	}
	return w.Code, body.Error
}

func TestEtcdOutOfSpaceAnswers503StorageFullWithTheFix(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("commit: %w", rpctypes.ErrNoSpace),
		fmt.Errorf("write 3 keys from /x: %w", rpctypes.ErrGRPCNoSpace),
	} {
		status, body := respond(t, err)
		if status != http.StatusServiceUnavailable || body["kind"] != "storage_full" {
			t.Errorf("%v: %d %v; want 503 storage_full", err, status, body)
		}
		if !strings.HasPrefix(body["message"], etcdmaint.NoSpaceHelp) || !strings.Contains(body["message"], err.Error()) {
			t.Errorf("%v: message %q does not give the fix and the cause", err, body["message"])
		}
	}
}

func TestOtherErrorsKeepTheirStatus(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		kind   string
	}{
		{fmt.Errorf("job %q: %w", "j", kvmodel.ErrNotFound), 404, "not_found"},
		{errors.New("commit: etcdserver: request timed out"), 500, "internal"},
		{&apiError{http.StatusServiceUnavailable, "queue_unavailable", "not queued"}, 503, "queue_unavailable"},
	} {
		status, body := respond(t, tc.err)
		if status != tc.status || body["kind"] != tc.kind || body["message"] != tc.err.Error() {
			t.Errorf("%v: %d %v; want %d %s", tc.err, status, body, tc.status, tc.kind)
		}
	}
}

// Every error answer carries JobX's exception headers: the kind, and the
// message on one line, cut to maxExceptionMessage bytes.
func TestErrorAnswersCarryTheExceptionHeaders(t *testing.T) {
	gin.SetMode(gin.TestMode)
	long := "first line\nsecond line " + strings.Repeat("é", maxExceptionMessage)
	for _, tc := range []struct {
		err        error
		kind, want string
	}{
		{fmt.Errorf("job %q: %w", "j", kvmodel.ErrNotFound), "not_found", `job "j": not found`},
		{errors.New(long), "internal", ""},
	} {
		r := gin.New()
		r.Use(respondErrors)
		r.GET("/", func(c *gin.Context) { c.Error(tc.err) })
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		typ, msg := w.Header().Get(HeaderExceptionType), w.Header().Get(HeaderExceptionMessage)
		if typ != tc.kind {
			t.Errorf("%v: %s %q, want %q", tc.err, HeaderExceptionType, typ, tc.kind)
		}
		if tc.want != "" && msg != tc.want {
			t.Errorf("%v: %s %q, want %q", tc.err, HeaderExceptionMessage, msg, tc.want)
		}
		if strings.ContainsAny(msg, "\r\n") || len(msg) > maxExceptionMessage || !utf8.ValidString(msg) || !strings.HasPrefix(msg, strings.Fields(tc.err.Error())[0]) {
			t.Errorf("%v: %s %q is not the message's start on one line of at most %d valid bytes", tc.err, HeaderExceptionMessage, msg, maxExceptionMessage)
		}
	}
}
