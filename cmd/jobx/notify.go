package main

import (
	"fmt"
	"net"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/spf13/cobra"
)

func (a *app) notifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Notification tools (mr_http_notification_listen)",
	}
	addr := a.env.NotifyListen
	listen := &cobra.Command{
		Use:   "listen",
		Short: "Print HTTP notifications as they arrive, one line each",
		Long: `Listen for HTTP notifications (a workflow's notifications.http channel, or
JobX's HTTP log hook) and print one line per notification: time, name, level,
message, as JobX's mr_http_notification_listen did.`,
		Example: `  jobx notify listen --addr 127.0.0.1:3333
  # and in workflow.yaml:  notifications: {http: "http://127.0.0.1:3333/"}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			fmt.Fprintf(a.stdout, "Listening on [%s]:(%s).\n", host, port)
			return notifications.Listen(cmd.Context(), ln, a.stdout)
		},
	}
	listen.Flags().StringVar(&addr, "addr", addr, "listen address (env HTTP_LISTEN_HOSTNAME and HTTP_LISTEN_PORT, JobX's)")
	cmd.AddCommand(listen)
	return cmd
}
