package tahoetest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
)

// b32 is Tahoe's base32: RFC 4648 alphabet, lower case, no padding.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func enc(b []byte) string { return strings.ToLower(b32.EncodeToString(b)) }

func hash(parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// chkCap returns the content-addressed immutable-file cap of data:
// URI:CHK:<key>:<UEB hash>:<k>:<N>:<size>, with k=3, N=10 as Tahoe's defaults.
func chkCap(data []byte) string {
	d := string(data)
	return fmt.Sprintf("URI:CHK:%s:%s:3:10:%d", enc(hash("key", d)[:16]), enc(hash("ueb", d)), len(data))
}

func chkVerifier(cap string) string {
	f := strings.Split(cap, ":")
	return fmt.Sprintf("URI:CHK-Verifier:%s:%s:%s:%s:%s", enc(hash("storage-index", f[2])[:16]), f[3], f[4], f[5], f[6])
}

// newDirCaps returns a fresh directory's write cap, read cap and verify cap.
func newDirCaps() (write, read, verify string) {
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	wk := enc(key)
	fp := enc(hash("fingerprint", wk))
	rk := enc(hash("readkey", wk)[:16])
	sk := enc(hash("storage-index", rk)[:16])
	return "URI:DIR2:" + wk + ":" + fp, "URI:DIR2-RO:" + rk + ":" + fp, "URI:DIR2-Verifier:" + sk + ":" + fp
}

var (
	chkRE = regexp.MustCompile(`^URI:CHK:[a-z2-7]+:[a-z2-7]+:[0-9]+:[0-9]+:[0-9]+$`)
	dirRE = regexp.MustCompile(`^URI:DIR2(-RO)?:[a-z2-7]+:[a-z2-7]+$`)
)

// wellFormed reports whether c is a cap of a kind this double knows.
func wellFormed(c string) bool { return chkRE.MatchString(c) || dirRE.MatchString(c) }
