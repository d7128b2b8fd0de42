package gateway

import (
	"errors"
	"net/http"

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
	c.JSON(status, errorBody{
		Error:     map[string]string{"kind": kind, "message": msg},
		RequestID: c.Writer.Header().Get(HeaderRequestID),
	})
}
