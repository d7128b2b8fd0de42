package kvmodel_test

import (
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

func TestAStepYieldsItsRolesInOrderWithTheirHandlers(t *testing.T) {
	s := &kvmodel.Step{Name: "s", MapHandlerName: "m", ReduceHandlerName: "r"}
	var got []string
	for r, h := range s.Roles() {
		got = append(got, r.Name+"="+h+"/"+r.HandlerType)
	}
	want := []string{"map=m/mapper", "combine=/combiner", "reduce=r/reducer"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, r := range kvmodel.StepRoles {
		if r.Optional != (r.Name == "combine") {
			t.Errorf("role %s: optional %v", r.Name, r.Optional)
		}
	}
}

func TestARoleIsFoundByItsNameOrItsHandlerType(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"map", "mapper"}, {"mapper", "mapper"}, {"combine", "combiner"}, {"combiner", "combiner"},
		{"reduce", "reducer"}, {"reducer", "reducer"},
	} {
		r, ok := kvmodel.RoleOf(tc.name)
		if !ok || r.HandlerType != tc.want {
			t.Errorf("RoleOf(%q) = %+v, %v; want type %s", tc.name, r, ok, tc.want)
		}
	}
	if r, ok := kvmodel.RoleOf("mappers"); ok {
		t.Errorf("RoleOf(mappers) = %+v", r)
	}
}

func TestHandlerOfSetsTheFieldOfTheRole(t *testing.T) {
	s := &kvmodel.Step{}
	for i, r := range kvmodel.StepRoles {
		*s.HandlerOf(r) = string(rune('a' + i))
	}
	if s.MapHandlerName != "a" || s.CombineHandlerName != "b" || s.ReduceHandlerName != "c" {
		t.Fatalf("got %+v", s)
	}
}

func TestCheckRoleNamesTheStepTheRoleTheHandlerAndBothTypes(t *testing.T) {
	mapRole, _ := kvmodel.RoleOf("map")
	s := &kvmodel.Step{Name: "split"}
	for _, tc := range []struct {
		name string
		h    *kvmodel.Handler
		want string // "" for no error
	}{
		{"a mapper fills the map role", &kvmodel.Handler{Name: "m", HandlerType: kvmodel.HandlerMapper}, ""},
		{"a reducer does not", &kvmodel.Handler{Name: "r", HandlerType: kvmodel.HandlerReducer},
			`map handler "r" is a reducer, not a mapper`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kvmodel.CheckRole(mapRole, tc.h)
			serr := s.CheckRole(mapRole, tc.h)
			if tc.want == "" {
				if err != nil || serr != nil {
					t.Fatalf("got %v, %v", err, serr)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("CheckRole: got %v, want %s", err, tc.want)
			}
			if serr == nil || serr.Error() != "step split: "+tc.want {
				t.Errorf("Step.CheckRole: got %v, want step split: %s", serr, tc.want)
			}
		})
	}
}
