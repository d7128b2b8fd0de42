package kvmodel

import (
	"crypto/sha1"
	"encoding/hex"
)

// ContentVersion returns the handler's Version, or when it has none a
// digest of its source code: what identifies this handler's program, so
// that a changed handler is installed and scoped anew.
func (h *Handler) ContentVersion() string {
	if h.Version != "" {
		return h.Version
	}
	sum := sha1.Sum([]byte(h.SourceCode))
	return hex.EncodeToString(sum[:])
}
