package kvmodel_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

func TestLimitErrorsNameTheDataTheirSizeAndTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"a session value", kvmodel.CheckSessionValue("k", 10<<20), `session value of key "k" is 10485760 bytes, over the 1048576-byte session value limit`},
		{"an item", kvmodel.CheckItem(`argument "x"`, 9<<20), `argument "x" is 9437184 bytes, over the 8388608-byte dataset item limit`},
		{"a size cut off, with what sets the limit", &kvmodel.LimitError{What: "request body", Size: -1, Limit: 64, Name: "request body", SetBy: "--max-body"},
			"request body is more than 64 bytes, over the 64-byte request body limit (set by --max-body)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || tc.err.Error() != tc.want || !errors.Is(tc.err, kvmodel.ErrTooLarge) {
				t.Fatalf("want %q (ErrTooLarge), got %v", tc.want, tc.err)
			}
		})
	}
	if kvmodel.CheckSessionValue("k", kvmodel.MaxSessionValueBytes) != nil || kvmodel.CheckItem("x", kvmodel.MaxItemBytes) != nil {
		t.Fatal("a size equal to its limit was refused")
	}
}

// The limits fit etcd: a session value at its limit under the longest
// session key is one put that etcd takes (where twice as much is refused),
// and an item at its limit is stored and read back whole.
func TestDataAtItsLimitFitsEtcd(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	long := strings.Repeat("n", kvmodel.MaxNameLength)
	key := kvmodel.SessionPrefix(long, kvmodel.NewID()) + long
	if _, err := cli.Put(ctx, key, strings.Repeat("v", kvmodel.MaxSessionValueBytes)); err != nil {
		t.Fatalf("a session value at its limit: %v", err)
	}
	if _, err := cli.Put(ctx, key, strings.Repeat("v", 2*kvmodel.MaxSessionValueBytes)); err == nil {
		t.Fatal("etcd took a value twice the session value limit: the limit could be higher")
	}
	item := append(bytes.Repeat([]byte("i"), kvmodel.MaxItemBytes-1), '\n')
	inv := kvmodel.NewID()
	if err := st.Apply(ctx, kvmodel.DatasetOps(long, inv, kvmodel.PostReduce, item)); err != nil {
		t.Fatalf("an item at its limit: %v", err)
	}
	got, err := st.ReadDataset(ctx, long, inv, kvmodel.PostReduce)
	if err != nil || !bytes.Equal(got, item) {
		t.Fatalf("an item at its limit read back as %d bytes: %v", len(got), err)
	}
}
