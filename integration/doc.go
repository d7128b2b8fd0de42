// Package integration holds jobx's whole-system tests: real etcd, real
// nsqd, the gateway and runners in-process, handlers run by real
// interpreters (and, where a containerd socket is reachable, in real
// containers).
package integration
