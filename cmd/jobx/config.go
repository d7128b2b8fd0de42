package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults of the connection settings.
const (
	defaultEtcdHost = "127.0.0.1"
	defaultEtcdPort = "2379" // JobX used 4001, etcd v2's legacy port
	defaultNSQDPort = "4150"
	// defaultLookupdPort is nsqlookupd's HTTP port.
	defaultLookupdPort = "4161"
	defaultGateway     = "http://127.0.0.1:8080"
)

// envConfig is everything jobx reads from the environment. It is the only
// place that reads environment variables: commands take their flag defaults
// from it.
type envConfig struct {
	Etcd    []string // JOBX_ETCD, or MR_ETCD_HOST + MR_ETCD_PORT + MR_ETCD_IS_SSL
	EtcdErr error    // a malformed etcd variable, reported when the default is used
	NSQD    []string // JOBX_NSQD or MR_NSQD_HOSTS
	Lookupd []string // JOBX_LOOKUPD: nsqlookupd HTTP addresses
	Gateway string   // JOBX_GATEWAY
	// GatewayToken is JOBX_GATEWAY_TOKEN (not JOBX_TOKEN, which handlers
	// get for the services endpoint).
	GatewayToken string
	// NotifyListen is HTTP_LISTEN_HOSTNAME:HTTP_LISTEN_PORT (JobX's
	// listener), 127.0.0.1:3333 by default.
	NotifyListen string
	// SMTPPassword is JOBX_SMTP_PASSWORD, the runner's --smtp-user password
	// (an environment variable so it stays out of process listings).
	SMTPPassword string

	// Listen addresses and sockets of the daemons.
	HTTP        string   // JOBX_HTTP: the gateway's --http
	MetricsAddr string   // JOBX_METRICS_ADDR: a runner's --metrics-addr
	NSQDHTTP    []string // JOBX_NSQD_HTTP: a runner's --nsqd-http
	Containerd  string   // JOBX_CONTAINERD: a runner's --containerd socket
	Agent       string   // JOBX_AGENT: a runner's --agent binary
	FSDir       string   // JOBX_FS_DIR: jobx fs's and jobx apply's --fs-dir
	FSConfigDir string   // JOBX_FS_CONFIG_DIR: their --fs-config-dir
	// CompactRetention is JOBX_ETCD_COMPACT_RETENTION: a runner's
	// --etcd-compact-retention (a duration, checked with the flag).
	CompactRetention string

	Capabilities []string // MR_SYSTEM_CAPABILITIES
	Workflows    []string // MR_WORKFLOW_NAMES
	Channel      string   // MR_CHANNEL

	LogLevel  string // JOBX_LOG_LEVEL
	LogFormat string // JOBX_LOG_FORMAT
}

// loadEnv reads the environment through getenv.
func loadEnv(getenv func(string) string) envConfig {
	var c envConfig
	if v := getenv("JOBX_ETCD"); v != "" {
		c.Etcd = splitList(v)
	} else {
		host := orDefault(getenv("MR_ETCD_HOST"), defaultEtcdHost)
		port := orDefault(getenv("MR_ETCD_PORT"), defaultEtcdPort)
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			c.EtcdErr = fmt.Errorf("MR_ETCD_PORT=%q is not a port number", port)
		}
		scheme := "http"
		switch ssl := getenv("MR_ETCD_IS_SSL"); ssl {
		case "", "0", "false":
		case "1", "true":
			scheme = "https"
		default:
			c.EtcdErr = fmt.Errorf("MR_ETCD_IS_SSL=%q: want 0 or 1", ssl)
		}
		c.Etcd = []string{scheme + "://" + net.JoinHostPort(host, port)}
	}
	c.NSQD = []string{net.JoinHostPort(defaultEtcdHost, defaultNSQDPort)}
	if v := orDefault(getenv("JOBX_NSQD"), getenv("MR_NSQD_HOSTS")); v != "" {
		c.NSQD = splitList(v)
	}
	c.Lookupd = splitList(getenv("JOBX_LOOKUPD"))
	c.HTTP = getenv("JOBX_HTTP")
	c.MetricsAddr = getenv("JOBX_METRICS_ADDR")
	c.NSQDHTTP = splitList(getenv("JOBX_NSQD_HTTP"))
	c.Containerd = getenv("JOBX_CONTAINERD")
	c.Agent = getenv("JOBX_AGENT")
	c.FSDir = getenv("JOBX_FS_DIR")
	c.FSConfigDir = getenv("JOBX_FS_CONFIG_DIR")
	c.CompactRetention = getenv("JOBX_ETCD_COMPACT_RETENTION")
	c.Gateway = orDefault(getenv("JOBX_GATEWAY"), defaultGateway)
	c.GatewayToken = getenv("JOBX_GATEWAY_TOKEN")
	c.NotifyListen = net.JoinHostPort(orDefault(getenv("HTTP_LISTEN_HOSTNAME"), "127.0.0.1"), orDefault(getenv("HTTP_LISTEN_PORT"), "3333"))
	c.SMTPPassword = getenv("JOBX_SMTP_PASSWORD")
	c.Capabilities = splitList(getenv("MR_SYSTEM_CAPABILITIES"))
	c.Workflows = splitList(getenv("MR_WORKFLOW_NAMES"))
	c.Channel = getenv("MR_CHANNEL")
	c.LogLevel = getenv("JOBX_LOG_LEVEL")
	if c.LogLevel == "" {
		c.LogLevel = "info"
		if d := getenv("DEBUG"); d == "1" || d == "true" { // JobX's DEBUG
			c.LogLevel = "debug"
		}
	}
	c.LogFormat = orDefault(getenv("JOBX_LOG_FORMAT"), "text")
	return c
}

// etcdEndpoints normalises etcd endpoints: a bare host gets port 2379 and
// every endpoint gets a scheme (http unless given).
func etcdEndpoints(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, e := range list {
		scheme, hostport, ok := strings.Cut(e, "://")
		if !ok {
			scheme, hostport = "http", e
		}
		if scheme != "http" && scheme != "https" {
			return nil, fmt.Errorf("--etcd %q: scheme must be http or https", e)
		}
		hostport = strings.TrimSuffix(hostport, "/")
		if hostport == "" {
			return nil, fmt.Errorf("--etcd %q: no host", e)
		}
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), defaultEtcdPort)
		}
		out = append(out, scheme+"://"+hostport)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--etcd: no endpoint")
	}
	return out, nil
}

// nsqdAddrs normalises nsqd addresses: a bare host gets port 4150.
func nsqdAddrs(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if _, _, err := net.SplitHostPort(a); err != nil {
			if strings.Contains(a, "://") || strings.Count(a, ":") == 1 {
				return nil, fmt.Errorf("--nsqd %q: want host or host:port", a)
			}
			a = net.JoinHostPort(strings.Trim(a, "[]"), defaultNSQDPort)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--nsqd: no address")
	}
	return out, nil
}

// lookupdAddrs normalises nsqlookupd HTTP addresses: a bare host gets port
// 4161, and a URL's scheme and path are refused (go-nsq adds them).
func lookupdAddrs(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if strings.Contains(a, "://") || strings.Contains(a, "/") {
			return nil, fmt.Errorf("--lookupd %q: want host or host:port of nsqlookupd's HTTP API", a)
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			if strings.Count(a, ":") == 1 {
				return nil, fmt.Errorf("--lookupd %q: want host or host:port", a)
			}
			a = net.JoinHostPort(strings.Trim(a, "[]"), defaultLookupdPort)
		}
		out = append(out, a)
	}
	return out, nil
}

// newEtcdClient connects to endpoints (already normalised). Any https
// endpoint enables TLS with the system's roots.
// tlsFiles name PEM files for a TLS client: a CA bundle to verify the
// server, and a certificate and key to present.
type tlsFiles struct{ CA, Cert, Key string }

func (f tlsFiles) set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// config builds the client TLS config; flag names the flag prefix in errors.
func (f tlsFiles) config(flag string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("--%s-cacert: %w", flag, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%s-cacert %s: no PEM certificate in it", flag, f.CA)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("--%s-cert and --%s-key go together", flag, flag)
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("--%s-cert/--%s-key: %w", flag, flag, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func newEtcdClient(endpoints []string, files tlsFiles) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// Keepalives find a member whose host died without closing its
		// connections, so that watches and requests move to another
		// endpoint within seconds instead of waiting on TCP timeouts.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
	}
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if files.set() {
		t, err := files.config("etcd")
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
