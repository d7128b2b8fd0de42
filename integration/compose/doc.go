// Package compose tests the docker-compose cluster of the repository's
// docker-compose.yml: three etcd members, nsqlookupd, two nsqd, a gateway
// and two runners with containerd sandboxes, all built FROM scratch. Its
// test is behind the build tag "cluster" (it needs Docker, docker-compose and
// the build context staged by make cluster-stage), so go test ./... skips
// it; make test-cluster runs it:
//
//	make test-cluster
//
// It brings the cluster up, loads the examples, runs every example job
// through the gateway and checks the results, then stops one etcd member,
// one nsqd and one runner in turn, runs every job again under each fault,
// prints a table of the faults and the jobs completed under them, and tears
// the cluster down (volumes included), also when it fails.
package compose
