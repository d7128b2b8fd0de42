package main

import (
	"testing"

	"github.com/jobx/jobx/runner"
)

func TestTheScratchFlagTakesASizeOrBytes(t *testing.T) {
	for _, tc := range []struct {
		name, flag string
		want       int64
		ok         bool
	}{
		{"unset keeps the runner's default", "", 512 << 20, true},
		{"a binary size", "64Mi", 64 << 20, true},
		{"bytes", "1048576", 1 << 20, true},
		{"not a size", "lots", 0, false},
		{"zero", "0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rf := &runnerFlags{opts: runner.NewOptions(), sandbox: sandboxAuto, scratch: tc.flag}
			err := rf.validate()
			if (err == nil) != tc.ok {
				t.Fatalf("--scratch %q: %v", tc.flag, err)
			}
			if tc.ok && rf.opts.Scratch != tc.want {
				t.Fatalf("--scratch %q gave %d bytes, want %d", tc.flag, rf.opts.Scratch, tc.want)
			}
		})
	}
}
