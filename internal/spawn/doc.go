// Package spawn is the fork-server protocol that jobx's sandbox servers
// speak: the agent (sandbox/agent, the init process of warm containers) and
// the Python zygote (processors/python). Per connection:
//
//   - the client sends one JSON request line (a Request for the agent, a
//     ZygoteRequest for the zygote) with three file descriptors attached
//     (SCM_RIGHTS): the child's stdin, stdout and stderr;
//   - the server replies {"pid": N} once the child runs, or {"error": "..."};
//   - then one final line, {"exit_code": c} or {"signal": s} (see Reply for
//     the zygote's additions);
//   - a client that hangs up before the child ends gets the child's process
//     group killed.
//
// The client side is Start and the Child it returns:
//
//	c, err := spawn.Start(ctx, sock, spawn.Request{Argv: argv, Env: env}, stdin, stdout, stderr)
//	if err != nil {
//		return err // errors.Is(err, spawn.ErrServerGone): the sandbox is gone
//	}
//	defer c.Close()
//	stop := context.AfterFunc(ctx, c.Kill)
//	defer stop()
//	st, err := c.Wait()
//
// The server side is ReadRequest and WriteReply:
//
//	var req spawn.Request
//	files, err := spawn.ReadRequest(conn, &req)
//	// ... start the child on files[0], files[1], files[2], close them ...
//	spawn.WriteReply(conn, spawn.Reply{Pid: &pid})
//	// ... wait for it, or kill its group when conn reads end-of-file ...
//	spawn.WriteReply(conn, spawn.Reply{ExitCode: &code})
//
// The Python zygote's server is Python (processors/python/jobx_runtime.py);
// the types here are its wire format too, which must not change.
package spawn
