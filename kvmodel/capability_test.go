package kvmodel_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

func TestAHandlerWithoutARequiredCapabilityNeedsTheGeneralOne(t *testing.T) {
	for _, tc := range []struct{ required, want string }{
		{"", kvmodel.CapabilityGeneral}, {kvmodel.CapabilityNone, kvmodel.CapabilityGeneral}, {"gpu", "gpu"},
	} {
		if got := (&kvmodel.Handler{RequiredCapability: tc.required}).Capability(); got != tc.want {
			t.Errorf("required %q: got %q, want %q", tc.required, got, tc.want)
		}
	}
}

func TestNoCapabilityNamesTheCapabilityTheWorkflowTheHandlerAndTheStep(t *testing.T) {
	h := &kvmodel.Handler{Name: "map_gpu", RequiredCapability: "gpu"}
	f := kvmodel.NoCapability("dev", "split", h)
	want := `no live runner offers capability "gpu" for workflow "dev", which handler map_gpu of step split requires; start one with: jobx runner --capabilities gpu`
	if f.Kind != kvmodel.FailureNoCapability || f.Handler != "map_gpu" || f.Step != "split" || f.Message != want {
		t.Errorf("got %+v, want message %s", f, want)
	}
	f = kvmodel.NoCapability("dev", "", h)
	want = `no live runner offers capability "gpu" for workflow "dev", which handler map_gpu requires; start one with: jobx runner --capabilities gpu`
	if f.Step != "" || f.Message != want {
		t.Errorf("without a step: got %+v, want message %s", f, want)
	}
}

func TestUnofferedFailsOnlyWhenNoLiveRunnerServesTheCapabilityForTheWorkflow(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	a, err := st.Announce(ctx, kvmodel.RunnerInfo{ID: "r1", Capabilities: []string{"general"}, Workflows: []string{"dev"}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	reg, err := kvmodel.NewRegistry(ctx, st, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	general, gpu := &kvmodel.Handler{Name: "m"}, &kvmodel.Handler{Name: "g", RequiredCapability: "gpu"}
	for _, tc := range []struct {
		name     string
		wf       string
		h        *kvmodel.Handler
		unserved bool
	}{
		{"a served capability of a served workflow", "dev", general, false},
		{"a capability nobody serves", "dev", gpu, true},
		{"a served capability of a workflow the runner does not serve", "other", general, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := reg.Unoffered(ctx, tc.wf, "s", tc.h)
			if (f != nil) != tc.unserved {
				t.Fatalf("got %+v, want unserved %v", f, tc.unserved)
			}
			if f != nil && (f.Kind != kvmodel.FailureNoCapability || f.Handler != tc.h.Name || f.Step != "s") {
				t.Errorf("got %+v", f)
			}
		})
	}
}
