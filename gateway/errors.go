package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/kvmodel"
)

// apiError is an error with the HTTP status and kind it answers with.
type apiError struct {
	status int
	kind   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, "bad_request", msg} }

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error     any    `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// respondErrors maps the handler's error to a status and a JSON body. It is
// the one place where errors become HTTP statuses.
func respondErrors(c *gin.Context) {
	c.Next()
	if len(c.Errors) == 0 || c.Writer.Written() {
		return
	}
	err := c.Errors.Last().Err
	status, kind, msg := http.StatusInternalServerError, "internal", err.Error()
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		status, kind = ae.status, ae.kind
	case etcdmaint.IsNoSpace(err):
		// Nothing was recorded: the client may submit again once space
		// is reclaimed.
		status, kind, msg = http.StatusServiceUnavailable, "storage_full", etcdmaint.NoSpaceHelp+" ("+msg+")"
	case errors.As(err, &mbe), errors.Is(err, kvmodel.ErrTooLarge):
		status, kind = http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, kvmodel.ErrNotFound):
		status, kind = http.StatusNotFound, "not_found"
	case errors.Is(err, kvmodel.ErrInvalid):
		status, kind = http.StatusBadRequest, "bad_request"
	case errors.Is(err, kvmodel.ErrExists), errors.Is(err, kvmodel.ErrConflict):
		status, kind = http.StatusConflict, "conflict"
	}
	setException(c, kind, msg)
	c.JSON(status, errorBody{
		Error:     map[string]string{"kind": kind, "message": msg},
		RequestID: c.Writer.Header().Get(HeaderRequestID),
	})
}

// maxExceptionMessage bounds HeaderExceptionMessage: the whole message is
// in the body.
const maxExceptionMessage = 1024

// setException sets JobX's exception headers of an answer that reports an
// error of kind with message msg (its first maxExceptionMessage bytes, on
// one line).
func setException(c *gin.Context, kind, msg string) {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > maxExceptionMessage {
		msg = strings.ToValidUTF8(msg[:maxExceptionMessage], "")
	}
	c.Header(HeaderExceptionType, kind)
	c.Header(HeaderExceptionMessage, msg)
}

// failureHeaders sets the exception headers of an answer about failed
// request req.
func failureHeaders(c *gin.Context, req *kvmodel.Request) {
	if req.Error == nil {
		setException(c, "failed", "request "+req.ID+" failed")
		return
	}
	setException(c, string(req.Error.Kind), req.Error.Message)
}
