package processors

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
)

// Processor checks and installs the handler files of one language. A
// Processor is safe for concurrent use.
type Processor interface {
	// Name is the processor's source type: "python", "node", "sh" or "exec".
	Name() string
	// Extensions lists the file extensions the processor claims, with the
	// dot; nil for the generic "exec" processor.
	Extensions() []string
	// Check syntax-checks src with the language's own checker. file names
	// the source in messages; a syntax error is a *CheckError.
	Check(ctx context.Context, file string, src []byte) error
	// Install materialises what is needed to run h under dir and returns how
	// to run it. It is idempotent and safe to call concurrently; files are
	// named by h.Name and h.Version, so versions never collide.
	Install(dir string, h Handler) (Program, error)
}

// Handler is the part of a handler definition that a Processor needs.
type Handler struct {
	Workflow   string
	Name       string
	Type       string // TypeMapper, TypeCombiner or TypeReducer
	SourceType string // the Processor's Name
	Source     string
	Version    string // Version(Source) when empty
}

// FileVersion returns h.Version, or the version of h.Source when it is empty.
func (h Handler) FileVersion() string {
	if h.Version != "" {
		return h.Version
	}
	return Version([]byte(h.Source))
}

// Program says how to run an installed handler. The process speaks the
// handler protocol: newline-delimited JSON on stdin and stdout, log on
// stderr, exit status 0 for success.
type Program struct {
	// Argv is the cold-start command; Argv[0] is looked up in PATH.
	Argv []string
	// Env is extra environment, "KEY=value". It includes JOBX_HANDLER and
	// JOBX_HANDLER_TYPE, so the program runs as is; the runner adds the
	// invocation's context and scope variables.
	Env []string
	// Warm is non-nil when the program can also run on a warm zygote.
	Warm *WarmSpec
}

// WarmSpec says how to run a handler on a warm zygote.
type WarmSpec struct {
	Kind        string // "python": see package processors/python
	HandlerPath string
}

// CheckError is a syntax error found by a Processor's Check. Line is 1-based,
// 0 when the checker did not say.
type CheckError struct {
	File string
	Line int
	Msg  string
}

func (e *CheckError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Version returns the version of a handler source: its hex SHA-1.
func Version(src []byte) string {
	sum := sha1.Sum(src)
	return hex.EncodeToString(sum[:])
}

// Environment variables that carry an invocation's context to a handler.
const (
	EnvWorkflow     = "JOBX_WORKFLOW"
	EnvRequestID    = "JOBX_REQUEST_ID"
	EnvInvocationID = "JOBX_INVOCATION_ID"
	EnvStep         = "JOBX_STEP"
	EnvHandler      = "JOBX_HANDLER"
	EnvHandlerType  = "JOBX_HANDLER_TYPE"
	// EnvScopeVars lists, comma-separated, the environment variables that
	// are scope-factory variables (injected as globals into Python handlers).
	EnvScopeVars = "JOBX_SCOPE_VARS"
	// EnvScopeJSON is a JSON object of the scope-factory variables with
	// their types (a number stays a number), which the Python and Node
	// runtimes inject; the variables of EnvScopeVars are their text form.
	EnvScopeJSON = "JOBX_SCOPE_JSON"
	// EnvSessionURL is the session endpoint; sessions are unavailable
	// without it.
	EnvSessionURL = "JOBX_SESSION_URL"
)

// HandlerEnv returns the Program.Env entries naming h.
func HandlerEnv(h Handler) []string {
	return []string{EnvHandler + "=" + h.Name, EnvHandlerType + "=" + h.Type}
}

// ExecName is the Name of the generic processor that runs any file with a
// #! line.
const ExecName = "exec"

var registry struct {
	sync.RWMutex
	byName map[string]Processor
	byExt  map[string]Processor
}

// Register makes p available by name and by its extensions. Language
// packages call it from init; it panics on a duplicate name or extension.
func Register(p Processor) {
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName = map[string]Processor{}
		registry.byExt = map[string]Processor{}
	}
	if _, dup := registry.byName[p.Name()]; dup {
		panic("processors: Register called twice for " + p.Name())
	}
	for _, ext := range p.Extensions() {
		ext = strings.ToLower(ext)
		if q, dup := registry.byExt[ext]; dup {
			panic(fmt.Sprintf("processors: extension %s claimed by %s and %s", ext, q.Name(), p.Name()))
		}
		registry.byExt[ext] = p
	}
	registry.byName[p.Name()] = p
}

// ByName returns the registered processor with the given name (a handler's
// source type).
func ByName(name string) (Processor, bool) {
	registry.RLock()
	defer registry.RUnlock()
	p, ok := registry.byName[name]
	return p, ok
}

// ForFile returns the processor for the file name, chosen by its extension;
// a file with an unclaimed extension (or none) whose src starts with "#!"
// goes to the "exec" processor.
func ForFile(name string, src []byte) (Processor, bool) {
	registry.RLock()
	p, ok := registry.byExt[strings.ToLower(path.Ext(name))]
	registry.RUnlock()
	if ok {
		return p, true
	}
	if HasShebang(src) {
		return ByName(ExecName)
	}
	return nil, false
}

// Names returns the names of the registered processors, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.byName))
	for n := range registry.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasShebang reports whether src starts with a "#!" line.
func HasShebang(src []byte) bool {
	return len(src) >= 2 && src[0] == '#' && src[1] == '!'
}
