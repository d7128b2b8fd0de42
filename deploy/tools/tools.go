//go:build tools

// Package tools pins the daemons `make cluster-stage` builds.
package tools

import (
	_ "github.com/nsqio/nsq/apps/nsqd"
	_ "github.com/nsqio/nsq/apps/nsqlookupd"
)
