// Command jobx is jobx's one binary: the command-line tools (JobX's mr_*
// scripts), the gateway and runner daemons, and `jobx up`, a whole local
// cluster in one process. See docs/cli.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// main handles signals: the first SIGINT or SIGTERM cancels the context
// (daemons drain and stop), a second one exits at once.
func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		fmt.Fprintln(os.Stderr, "jobx: stopping (signal again to exit at once)")
		<-sigs
		os.Exit(130)
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}
