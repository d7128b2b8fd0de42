package kvmodel

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Key roots of JobX's layout.
const (
	EntityRoot = "/entities/"
	TreeRoot   = "/entity_trees/"
	QueueRoot  = "/queues/"
	JobxRoot   = "/jobx/"
)

// Entity is implemented by every stored entity. Class is JobX's
// entity_class; Identity is the key path below it (workflow first).
type Entity interface {
	Class() string
	Identity() []string
	setIdentity(parts []string)
	Revision() int64
	// SetRevision sets the revision UpdateCAS compares against.
	SetRevision(rev int64)
	validate() error
}

// Key returns an entity's etcd key.
func Key(e Entity) string {
	k := EntityRoot + e.Class()
	for _, p := range e.Identity() {
		k += "/" + p
	}
	return k
}

// rev carries the etcd mod revision an entity was read at; UpdateCAS
// compares against it.
type rev struct{ modRevision int64 }

// Revision returns the etcd mod revision the entity was read or written at.
func (r *rev) Revision() int64 { return r.modRevision }

// SetRevision sets the etcd mod revision UpdateCAS compares against.
func (r *rev) SetRevision(rv int64) { r.modRevision = rv }

// Workflow is JobX's workflow: an isolated namespace of jobs, steps and
// handlers.
type Workflow struct {
	rev
	Name          string `json:"-"`
	Description   string `json:"description"`
	HandlersState string `json:"handlers_state"`
	// Notifications are the workflow's channels; nil: log only.
	Notifications *NotifyConfig `json:"notifications,omitempty"`
	// Defaults are the sandbox limits (and network) of the workflow's
	// handlers that set none in their headers; the runner's apply after.
	Defaults *HandlerOptions `json:"defaults,omitempty"`
}

func (w *Workflow) Class() string          { return "workflow" }
func (w *Workflow) Identity() []string     { return []string{w.Name} }
func (w *Workflow) setIdentity(p []string) { w.Name = p[0] }
func (w *Workflow) validate() error        { return ValidateTopicName("workflow name", w.Name) }

// Job is the noun a client POSTs to; it names its initial step.
type Job struct {
	rev
	Name            string `json:"-"`
	WorkflowName    string `json:"workflow_name"`
	Description     string `json:"description"`
	InitialStepName string `json:"initial_step_name"`
	// ResultWriter overrides the runners' default result writer.
	ResultWriter *WriterConfig `json:"result_writer,omitempty"`
}

// WriterConfig chooses and configures a job's result writer (package
// internal/writers); nil means the runner's default.
type WriterConfig struct {
	Kind        string   `json:"kind" yaml:"kind"` // inline, file, email or http
	Path        string   `json:"path,omitempty" yaml:"path,omitempty"`
	AsDirectory bool     `json:"as_directory,omitempty" yaml:"as_directory,omitempty"`
	To          []string `json:"to,omitempty" yaml:"to,omitempty"`
	Subject     string   `json:"subject,omitempty" yaml:"subject,omitempty"`
	URL         string   `json:"url,omitempty" yaml:"url,omitempty"`
}

// WriterStatus is what a result writer did, recorded on the request.
type WriterStatus struct {
	Kind     string `json:"kind"`
	State    string `json:"state"` // written or failed
	Location string `json:"location,omitempty"`
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	At       string `json:"at,omitempty"` // when the writer finished (kvmodel.Now)
}

// NotifyConfig are a workflow's notification channels (no secrets: SMTP
// settings are the runners').
type NotifyConfig struct {
	HTTP            string   `json:"http,omitempty" yaml:"http,omitempty"`   // URL to POST events to
	Email           []string `json:"email,omitempty" yaml:"email,omitempty"` // recipients
	OnCompletion    bool     `json:"on_completion,omitempty" yaml:"on_completion,omitempty"`
	OnFailure       *bool    `json:"on_failure,omitempty" yaml:"on_failure,omitempty"`               // default true
	OnHandlerUpdate *bool    `json:"on_handler_update,omitempty" yaml:"on_handler_update,omitempty"` // default true
}

func (j *Job) Class() string          { return "job" }
func (j *Job) Identity() []string     { return []string{j.WorkflowName, j.Name} }
func (j *Job) setIdentity(p []string) { j.WorkflowName, j.Name = p[0], p[1] }
func (j *Job) validate() error {
	if err := ValidateName("job name", j.Name); err != nil {
		return err
	}
	return ValidateName("initial step name", j.InitialStepName)
}

// Step pairs a mapper, an optional combiner and a reducer.
type Step struct {
	rev
	Name               string `json:"-"`
	WorkflowName       string `json:"workflow_name"`
	Description        string `json:"description"`
	MapHandlerName     string `json:"map_handler_name"`
	CombineHandlerName string `json:"combine_handler_name"`
	ReduceHandlerName  string `json:"reduce_handler_name"`
}

func (s *Step) Class() string          { return "step" }
func (s *Step) Identity() []string     { return []string{s.WorkflowName, s.Name} }
func (s *Step) setIdentity(p []string) { s.WorkflowName, s.Name = p[0], p[1] }
func (s *Step) validate() error {
	if err := ValidateName("step name", s.Name); err != nil {
		return err
	}
	if err := ValidateName("map handler name", s.MapHandlerName); err != nil {
		return err
	}
	if s.CombineHandlerName != "" {
		if err := ValidateName("combine handler name", s.CombineHandlerName); err != nil {
			return err
		}
		if s.CombineHandlerName == s.MapHandlerName || s.CombineHandlerName == s.ReduceHandlerName {
			return fmt.Errorf("%w step %q: the combiner %q must differ from the mapper and the reducer", ErrInvalid, s.Name, s.CombineHandlerName)
		}
	}
	return ValidateName("reduce handler name", s.ReduceHandlerName)
}

// Handler types.
const (
	HandlerMapper   = "mapper"
	HandlerCombiner = "combiner"
	HandlerReducer  = "reducer"
)

// Handler is one body of code: a mapper, combiner or reducer.
type Handler struct {
	rev
	Name               string         `json:"-"`
	WorkflowName       string         `json:"workflow_name"`
	Description        string         `json:"description"`
	ArgumentSpec       [][]any        `json:"argument_spec"`
	SourceType         string         `json:"source_type"`
	SourceCode         string         `json:"source_code"`
	Version            string         `json:"version"`
	HandlerType        string         `json:"handler_type"`
	RequiredCapability string         `json:"required_capability"`
	Options            HandlerOptions `json:"jobx"`
}

// HandlerOptions are jobx's additions to a handler, from its metadata
// header. Zero values mean "use the workflow's or runner's default".
type HandlerOptions struct {
	File         string  `json:"file,omitempty"`
	Timeout      string  `json:"timeout,omitempty"`
	Memory       int64   `json:"memory,omitempty"`
	CPU          float64 `json:"cpu,omitempty"`
	Pids         int64   `json:"pids,omitempty"`
	Network      string  `json:"network,omitempty"`
	MaxOutput    int64   `json:"max_output,omitempty"`
	Scratch      int64   `json:"scratch,omitempty"` // bytes a run may write under its scratch directory
	Retries      int     `json:"retries,omitempty"`
	RetryBackoff string  `json:"retry_backoff,omitempty"`
	Image        string  `json:"image,omitempty"`
	// Reuse is "request" when warm sandboxes may run several invocations
	// of the handler in one request in one process, "handler" when they may
	// across requests (header `reuse`).
	Reuse string `json:"reuse,omitempty"`
}

func (h *Handler) Class() string          { return "handler" }
func (h *Handler) Identity() []string     { return []string{h.WorkflowName, h.Name} }
func (h *Handler) setIdentity(p []string) { h.WorkflowName, h.Name = p[0], p[1] }
func (h *Handler) validate() error {
	if err := ValidateName("handler name", h.Name); err != nil {
		return err
	}
	switch h.HandlerType {
	case HandlerMapper, HandlerCombiner, HandlerReducer:
	default:
		return fmt.Errorf("%w handler %q: handler_type %q is not mapper, combiner or reducer", ErrInvalid, h.Name, h.HandlerType)
	}
	if h.RequiredCapability == "" {
		h.RequiredCapability = CapabilityNone
	}
	if h.RequiredCapability != CapabilityNone {
		if err := ValidateTopicName("required capability", h.RequiredCapability); err != nil {
			return fmt.Errorf("handler %q: %w", h.Name, err)
		}
	}
	return nil
}

// Request and invocation states.
const (
	StatePending = "pending"
	StateDone    = "done"
	StateFailed  = "failed"
)

// FailureKind says what failed: Failure.Kind, and the gateway's
// X-MR-EXCEPTION-TYPE of a failed request. Kinds are stored and answered as
// these JSON strings, which clients match on: never rename one.
type FailureKind string

// The kinds of failure. The first group is a handler's own doing, as its
// sandbox reports it; the rest are the definitions', the request's or
// jobx's.
const (
	// FailureHandlerFailed means the handler exited with a non-zero status.
	FailureHandlerFailed FailureKind = "handler_failed"
	// FailureCrashed means the handler was killed by a signal (not one of
	// jobx's limits).
	FailureCrashed FailureKind = "crashed"
	// FailureTimeout means the handler ran past its timeout and was killed.
	FailureTimeout FailureKind = "timeout"
	// FailureOOM means the handler exceeded its memory limit and was killed.
	FailureOOM FailureKind = "oom"
	// FailureOutputLimit means the handler wrote more than its output
	// limit and was killed.
	FailureOutputLimit FailureKind = "output_limit"
	// FailureItemLimit means the handler wrote a dataset item over
	// MaxItemBytes.
	FailureItemLimit FailureKind = "item_limit"
	// FailureProtocol means the handler's output broke the output protocol
	// (no directive, a malformed line).
	FailureProtocol FailureKind = "protocol"

	// FailureDefinition means a step or handler the work needs does not
	// exist, or its program or limits do not load.
	FailureDefinition FailureKind = "definition"
	// FailureData means a stored dataset the invocation reads does not
	// decode.
	FailureData FailureKind = "data"
	// FailureScope means the handler's scope variables could not be
	// resolved.
	FailureScope FailureKind = "scope"
	// FailureFilesystem means the workflow's shared filesystem could not be
	// opened.
	FailureFilesystem FailureKind = "filesystem"
	// FailureNoCapability means no live runner offers a capability the work
	// requires.
	FailureNoCapability FailureKind = "no_capability"
	// FailureInfrastructure means jobx itself kept failing: a message that
	// used up its attempts, a request that could not be queued.
	FailureInfrastructure FailureKind = "infrastructure"
	// FailureDeadline means the request did not finish within the runners'
	// request deadline.
	FailureDeadline FailureKind = "deadline"
)

// Failure describes why an invocation, and so its request, failed.
type Failure struct {
	Kind         FailureKind `json:"kind"`
	Message      string      `json:"message"`
	InvocationID string      `json:"invocation_id,omitempty"`
	Direction    string      `json:"direction,omitempty"`
	Step         string      `json:"step,omitempty"`
	Handler      string      `json:"handler,omitempty"`
	ExitCode     *int        `json:"exit_code,omitempty"`
	Signal       string      `json:"signal,omitempty"`
	StderrTail   string      `json:"stderr_tail,omitempty"`
	Attempts     int         `json:"attempts,omitempty"`
}

// Request is one received job submission.
type Request struct {
	rev
	ID                 string         `json:"-"`
	WorkflowName       string         `json:"workflow_name"`
	JobName            string         `json:"job_name"`
	InvocationID       string         `json:"invocation_id"`
	Context            map[string]any `json:"context"`
	IsDone             bool           `json:"is_done"`
	IsBlocking         bool           `json:"is_blocking"`
	FailedInvocationID *string        `json:"failed_invocation_id"`

	State            string   `json:"state"`
	Error            *Failure `json:"error,omitempty"`
	CreatedTimestamp string   `json:"created_timestamp"`
	DoneTimestamp    string   `json:"done_timestamp,omitempty"`
	Keep             bool     `json:"keep,omitempty"`
	// Writer records what the job's result writer did.
	Writer *WriterStatus `json:"result_writer,omitempty"`
	// Result is a done request's result pairs, [[key, value], ...], when
	// they take at most MaxInlineResult bytes as stored: written with the
	// end of the request, a waiting gateway answers from the request's
	// watch event without reading the result dataset, which holds them
	// too. Nil: read the dataset.
	Result json.RawMessage `json:"result,omitempty"`
}

func (r *Request) Class() string          { return "request" }
func (r *Request) Identity() []string     { return []string{r.WorkflowName, r.ID} }
func (r *Request) setIdentity(p []string) { r.WorkflowName, r.ID = p[0], p[1] }
func (r *Request) validate() error        { return validateID("request id", r.ID) }

// Invocation directions.
const (
	DirectionMap    = "map"
	DirectionReduce = "reduce"
)

// Invocation is one run of a mapper or a reducer. A reduce invocation's
// ParentInvocationID is the map invocation it reduces (as in JobX).
type Invocation struct {
	rev
	ID                 string   `json:"-"`
	CreatedTimestamp   string   `json:"created_timestamp"`
	WorkflowName       string   `json:"workflow_name"`
	ParentInvocationID *string  `json:"parent_invocation_id"`
	StepName           string   `json:"step_name"`
	MappedCount        *int     `json:"mapped_count"`
	MappedWaiting      *int     `json:"mapped_waiting"`
	MappedStep         string   `json:"mapped_step,omitempty"`
	Error              *string  `json:"error"`
	Direction          string   `json:"direction"`
	RequestID          string   `json:"request_id"`
	State              string   `json:"state"`
	HandlerName        string   `json:"handler_name,omitempty"`
	Failure            *Failure `json:"failure,omitempty"`
	FinishedTimestamp  string   `json:"finished_timestamp,omitempty"`
	// Log is the tail of what its handler logged (stderr, notifications
	// left out), at most MaxInvocationLog bytes; recorded for kept
	// requests (submitted with keep=true, for tracing) only.
	Log string `json:"log,omitempty"`
}

// MaxInvocationLog bounds Invocation.Log.
const MaxInvocationLog = 4096

func (i *Invocation) Class() string          { return "invocation" }
func (i *Invocation) Identity() []string     { return []string{i.WorkflowName, i.ID} }
func (i *Invocation) setIdentity(p []string) { i.WorkflowName, i.ID = p[0], p[1] }
func (i *Invocation) validate() error        { return validateID("invocation id", i.ID) }

// Parent returns the parent invocation id, or "" for a root.
func (i *Invocation) Parent() string {
	if i.ParentInvocationID == nil {
		return ""
	}
	return *i.ParentInvocationID
}

// IsBranch reports whether a done map invocation branched to children.
func (i *Invocation) IsBranch() bool { return i.MappedWaiting != nil }

func validateID(kind, id string) error {
	if len(id) != 40 {
		return fmt.Errorf("%w %s %q: want 40 hex digits", ErrInvalid, kind, id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("%w %s %q: want 40 hex digits", ErrInvalid, kind, id)
	}
	return nil
}

// NewID returns a random 40-hex-digit id, the shape of JobX's ids.
func NewID() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// ReduceID returns the id of the reduce invocation of map invocation m.
// It is derived, not random, so that every runner computes the same one.
func ReduceID(m string) string { return derivedID("reduce:" + m) }

// ChildID returns the id of map invocation m's i-th child, derived so that
// a re-run of a branching mapper overwrites rather than duplicates.
func ChildID(m string, i int) string { return derivedID(fmt.Sprintf("child:%s:%d", m, i)) }

func derivedID(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// TimestampFormat is JobX's timestamp format with a fraction, in UTC.
const TimestampFormat = "2006-01-02 15:04:05.000000"

// Now returns the current time formatted with TimestampFormat.
func Now() string { return time.Now().UTC().Format(TimestampFormat) }

// ParseTimestamp parses a TimestampFormat (or JobX's fractionless) time.
func ParseTimestamp(s string) (time.Time, error) {
	return time.Parse("2006-01-02 15:04:05.999999", s)
}

// IntPtr and StrPtr help fill the optional JobX fields.
func IntPtr(n int) *int       { return &n }
func StrPtr(s string) *string { return &s }
