// Command jobx-agent is the init process of jobx's warm sandboxes
// (containerd containers and namespace domains): a fork/exec server on a
// unix socket (see package sandbox/agent). Build it static (CGO_ENABLED=0):
// it runs in images of any libc.
//
//	jobx-agent [--zygote-fd N] <socket path | fd:N> [zygote command...]
//
// A socket "fd:N" is a listening unix socket inherited as descriptor N;
// --zygote-fd N hands inherited descriptor N to the zygote as its fd 3.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/jobx/jobx/sandbox/agent"
)

const usage = "usage: jobx-agent [--zygote-fd N] <socket path | fd:N> [zygote command...]"

func main() {
	args := os.Args[1:]
	opts := agent.Options{}
	if len(args) >= 2 && args[0] == "--zygote-fd" {
		fd, err := strconv.Atoi(args[1])
		if err != nil || fd < 3 {
			fmt.Fprintln(os.Stderr, "jobx-agent: --zygote-fd wants a descriptor number >= 3\n"+usage)
			os.Exit(2)
		}
		opts.ZygoteFD, args = fd, args[2:]
	}
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	opts.Socket, opts.Zygote = args[0], args[1:]
	os.Exit(agent.Serve(opts))
}
