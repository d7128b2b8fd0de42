// Package etcdmaint keeps the etcd that holds jobx's state in working
// order: jobx, not the etcd deployment, bounds what etcd keeps, so that
// embedded, external and `jobx up` etcd all get the same upkeep.
//
// etcd keeps every revision of every key until its history is compacted;
// jobx rewrites a request's keys many times and deletes them when the
// request is cleaned up, so without compaction the database grows with
// every request ever run until it reaches etcd's quota and every write
// fails. A Compactor bounds that history: every runner process runs one,
// one of them is elected in etcd (under /jobx/compaction/), and the elected
// one compacts to the newest revision it saw at least Retention ago.
//
//	c, err := etcdmaint.NewCompactor(cli, etcdmaint.CompactOptions{
//		Retention: 5 * time.Minute, ID: "runner-1", Log: log,
//	})
//	if err != nil {
//		return err
//	}
//	go c.Run(ctx) // campaigns, compacts while elected, returns when ctx ends
//
// Compaction cancels every watch whose start revision it passes with
// ErrCompacted (rpctypes.ErrCompacted): a watch that was behind, or one that
// resumed on another member after a lost connection. Every watch of jobx
// (the catalog, the runner registry, the gateway's blocking waits) answers
// it by reading again and watching on from that read's revision.
package etcdmaint
