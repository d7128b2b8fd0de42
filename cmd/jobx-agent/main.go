// Command jobx-agent is the init process of jobx's warm containers: a
// fork/exec server on a unix socket (see package sandbox/agent).
// Build it static (CGO_ENABLED=0): it runs in images of any libc.
//
//	jobx-agent /jobx/run/agent.sock [zygote command...]
package main

import (
	"fmt"
	"os"

	"github.com/jobx/jobx/sandbox/agent"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: jobx-agent <socket> [zygote command...]")
		os.Exit(2)
	}
	os.Exit(agent.Serve(agent.Options{Socket: os.Args[1], Zygote: os.Args[2:]}))
}
