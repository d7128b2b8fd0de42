package cluster

// Component names a step of Start.
type Component string

// The steps of Start, in order.
const (
	Etcd    Component = "etcd"        // the embedded etcd
	NSQD    Component = "nsqd"        // the in-process nsqd
	Client  Component = "etcd client" // Options.Dial
	Load    Component = "load"        // Options.Load
	Gateway Component = "gateway"
	Runner  Component = "runner" // one of Options.Runners
)

// StartError is Start's error when a step fails: the step, so that a
// command can name the flag that configures it, and the step's error,
// whose message is StartError's.
type StartError struct {
	Component Component
	Err       error
}

func (e *StartError) Error() string { return e.Err.Error() }

// Unwrap returns the step's error.
func (e *StartError) Unwrap() error { return e.Err }
