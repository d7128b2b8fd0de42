package kvmodel

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength bounds every entity name, in bytes.
const MaxNameLength = 200

// maxTopicName is nsqd's limit on topic names; "mr.<wf>.reduce.<cap>" must fit.
const maxTopicName = 64

// ValidateName checks a job, step, handler or session-key name against
// JobX's rules: non-empty, no '-' or '/', no control characters, no "..",
// at most MaxNameLength bytes of valid UTF-8. kind names the thing in the
// error ("step name").
func ValidateName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w %s: empty", ErrInvalid, kind)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%w %s %.40q...: longer than %d bytes", ErrInvalid, kind, name, MaxNameLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w %s %q: not valid UTF-8", ErrInvalid, kind, name)
	case strings.ContainsAny(name, "-/"):
		return fmt.Errorf("%w %s %q: must not contain '-' or '/'", ErrInvalid, kind, name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("%w %s %q: must not contain '..'", ErrInvalid, kind, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w %s %q: must not contain spaces or control characters", ErrInvalid, kind, name)
		}
	}
	return nil
}

// ValidateTopicName checks a workflow or capability name: it becomes part of
// NSQ topic names, so besides ValidateName's rules it may hold only ASCII
// letters, digits and '_' (in particular no '.').
func ValidateTopicName(kind, name string) error {
	if err := ValidateName(kind, name); err != nil {
		return err
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if r == '.' {
				return fmt.Errorf("%w %s %q: must not contain '.'", ErrInvalid, kind, name)
			}
			return fmt.Errorf("%w %s %q: only ASCII letters, digits and '_' are allowed", ErrInvalid, kind, name)
		}
	}
	return nil
}

// ValidateTopicPair checks that the longest topic built from a workflow and
// a capability fits nsqd's 64-character limit.
func ValidateTopicPair(workflow, capability string) error {
	if n := len(ReduceTopic(workflow, capability)); n > maxTopicName {
		return fmt.Errorf("%w: workflow %q with capability %q makes a %d-character topic (nsqd allows %d)",
			ErrInvalid, workflow, capability, n, maxTopicName)
	}
	return nil
}

// CapabilityNone is the required capability of a handler that any runner
// may run; it routes to CapabilityGeneral topics.
const (
	CapabilityNone    = "none"
	CapabilityGeneral = "general"
)

// TopicCapability maps a handler's required capability to the capability
// part of its topic.
func TopicCapability(required string) string {
	if required == "" || required == CapabilityNone {
		return CapabilityGeneral
	}
	return required
}

// MapTopic and ReduceTopic are JobX's topic names.
func MapTopic(workflow, capability string) string {
	return "mr." + workflow + ".map." + capability
}

// ReduceTopic is the reduce counterpart of MapTopic.
func ReduceTopic(workflow, capability string) string {
	return "mr." + workflow + ".reduce." + capability
}
