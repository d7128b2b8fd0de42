package kvmodel

import "errors"

// Sentinel errors returned (wrapped) by Store methods.
var (
	// ErrNotFound means the entity or dataset does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a create-only save found the key already present.
	ErrExists = errors.New("already exists")
	// ErrConflict means a compare-and-swap lost against a concurrent write.
	ErrConflict = errors.New("conflict: changed concurrently")
	// ErrInvalid means a name or field breaks jobx's rules.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge means data is over one of jobx's size limits (limits.go);
	// the error that wraps it is a *LimitError, whose message names the limit.
	ErrTooLarge = errors.New("too large")
)
