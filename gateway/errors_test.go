package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
