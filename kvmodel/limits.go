package kvmodel

import "fmt"

// Size limits on what handlers and clients hand to jobx, in bytes. Each is
// checked where the data enters (the gateway, the runner's services
// endpoint, a handler's stdout), so nothing over a limit reaches etcd.
const (
	// MaxSessionValueBytes bounds one session value (its JSON as sent).
	// A value is one etcd put, not chunked: 1 MiB leaves room for the key
	// and the request's framing under etcd's default 1.5 MiB request limit.
	MaxSessionValueBytes = 1 << 20

	// MaxItemBytes bounds one dataset item: an argument of a request as
	// [name, value], or one stdout line of a handler ([key, value] or
	// [key, [value, ...]]). Datasets are chunked (ChunkSize), so the bound
	// is not etcd's: it keeps one item, which a runner holds whole and
	// passes on stdin, a sane size. It equals the gateway's default
	// --max-body.
	MaxItemBytes = 8 << 20
)

// LimitError is data over a size limit. Its message names the data, its
// size, the limit and, when one does, what sets the limit:
//
//	session value of key "k" is 10485762 bytes, over the 1048576-byte session value limit
type LimitError struct {
	What  string // the data: `session value of key "k"`, `argument "x"`
	Size  int64  // bytes; negative when unknown (a body cut off at the limit)
	Limit int64
	Name  string // the limit's name: "session value", "dataset item"
	SetBy string // what sets the limit ("jobx gateway --max-body"); empty for a constant
}

func (e *LimitError) Error() string {
	size := fmt.Sprintf("is %d bytes", e.Size)
	if e.Size < 0 {
		size = fmt.Sprintf("is more than %d bytes", e.Limit)
	}
	msg := fmt.Sprintf("%s %s, over the %d-byte %s limit", e.What, size, e.Limit, e.Name)
	if e.SetBy != "" {
		msg += " (set by " + e.SetBy + ")"
	}
	return msg
}

// Unwrap makes every LimitError match ErrTooLarge.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

// CheckSessionValue returns a *LimitError when the JSON value of session
// key key, size bytes, is over MaxSessionValueBytes.
func CheckSessionValue(key string, size int64) error {
	if size <= MaxSessionValueBytes {
		return nil
	}
	return &LimitError{What: fmt.Sprintf("session value of key %q", key), Size: size, Limit: MaxSessionValueBytes, Name: "session value"}
}

// CheckItem returns a *LimitError when a dataset item of size bytes,
// described by what, is over MaxItemBytes.
func CheckItem(what string, size int64) error {
	if size <= MaxItemBytes {
		return nil
	}
	return &LimitError{What: what, Size: size, Limit: MaxItemBytes, Name: "dataset item"}
}
