package kvmodel

import (
	"fmt"
	"iter"
)

// StepRole is one of a step's handler slots: the role's name (also the
// field name of jobx manifests and the -m/-c/-r flags of `jobx step`) and
// the HandlerType a handler needs to fill it.
type StepRole struct {
	Name        string // "map", "combine" or "reduce"
	HandlerType string // HandlerMapper, HandlerCombiner or HandlerReducer
	// Optional means a step may leave the role empty (the combiner).
	Optional bool
}

// StepRoles are a step's roles in order: map, combine, reduce. Read it;
// never modify it.
var StepRoles = [...]StepRole{
	{Name: "map", HandlerType: HandlerMapper},
	{Name: "combine", HandlerType: HandlerCombiner, Optional: true},
	{Name: "reduce", HandlerType: HandlerReducer},
}

// RoleOf returns the role named s, by its name or by its handler type
// ("map" and "mapper" both name the map role).
func RoleOf(s string) (StepRole, bool) {
	for _, r := range StepRoles {
		if s == r.Name || s == r.HandlerType {
			return r, true
		}
	}
	return StepRole{}, false
}

// Roles yields each of the step's roles, in StepRoles order, with the name
// of the handler that fills it ("" for an empty optional role).
func (s *Step) Roles() iter.Seq2[StepRole, string] {
	return func(yield func(StepRole, string) bool) {
		for _, r := range StepRoles {
			if !yield(r, *s.HandlerOf(r)) {
				return
			}
		}
	}
}

// HandlerOf returns the field of s that holds the name of the handler
// filling role r, for reading or setting it.
func (s *Step) HandlerOf(r StepRole) *string {
	switch r.HandlerType {
	case HandlerMapper:
		return &s.MapHandlerName
	case HandlerCombiner:
		return &s.CombineHandlerName
	}
	return &s.ReduceHandlerName
}

// CheckRole returns an error unless handler h has the type that role r
// takes. The error names the role, the handler and both types
// (`map handler "x" is a reducer, not a mapper`); a caller checking a
// step's role prefixes the step ("step s: ...").
func CheckRole(r StepRole, h *Handler) error {
	if h.HandlerType == r.HandlerType {
		return nil
	}
	return fmt.Errorf("%s handler %q is a %s, not a %s", r.Name, h.Name, h.HandlerType, r.HandlerType)
}

// CheckRole is the package's CheckRole for a role of step s: its error
// names the step too.
func (s *Step) CheckRole(r StepRole, h *Handler) error {
	if err := CheckRole(r, h); err != nil {
		return fmt.Errorf("step %s: %w", s.Name, err)
	}
	return nil
}
