package processors

import (
	"errors"
	"testing"
)

// FuzzParseHeader: any file either yields metadata with a valid handler
// type or an error that is a *HeaderError naming the file; never a panic.
func FuzzParseHeader(f *testing.F) {
	for _, seed := range []struct{ name, src string }{
		{"split.py", "\"\"\"\nSplit.\n\n**\nargument_spec:\n    - name: arguments\n      type: list\nhandler_type: mapper\nrequired_capability: none\n\"\"\"\nyield 1\n"},
		{"h.js", "/*\nSum.\n\n**\nhandler_type: reducer\ntimeout: 30s\n*/\n"},
		{"h.sh", "#!/bin/sh\n# Double.\n#\n# ** json\n# {\"handler_type\": \"mapper\", \"memory\": \"64Mi\"}\n"},
		{"h.py", "\"\"\"\nno pivot\n\"\"\"\n"},
		{"h.py", "\"\"\"\n**\nhandler_type: [\n\"\"\"\n"},
		{"h.py", "\"\"\"\n**\nhandler_type: mapper\nfoo: 1\n\"\"\"\n"},
		{"h.js", "// **\n// handler_type: combiner\n// retries: {count: 2, backoff: 1s}\n"},
	} {
		f.Add(seed.name, []byte(seed.src))
	}
	f.Fuzz(func(t *testing.T, name string, src []byte) {
		if name == "" {
			name = "h.py"
		}
		meta, err := ParseHeader(name, src)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) || he.File != name {
				t.Fatalf("error is not a *HeaderError naming %q: %v", name, err)
			}
			return
		}
		switch meta.HandlerType {
		case TypeMapper, TypeCombiner, TypeReducer:
		default:
			t.Fatalf("accepted handler_type %q", meta.HandlerType)
		}
	})
}
