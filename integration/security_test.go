package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/runner"
)

func TestGatewayTokensArePerWorkflow(t *testing.T) {
	c := startCluster(t, func(o *gateway.Options) {
		o.Tokens = map[string][]string{"wf": {"tok-a"}, "other": {"tok-b"}, gateway.AllWorkflows: {"admin"}}
	})
	c.addRunner()
	for _, wf := range []string{"wf", "other"} {
		c.leafWorkflow(wf)
	}
	call := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, c.url+path, strings.NewReader(`{"arguments":{"n":2}}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-MR-REQUEST-ID") + " " + string(b)
	}
	if st, body := call("POST", "/job/wf/leaf", ""); st != 401 || !strings.Contains(body, "needs a token") {
		t.Fatalf("no token: %d %s", st, body)
	}
	if st, body := call("POST", "/job/wf/leaf", "tok-b"); st != 403 || !strings.Contains(body, `not valid for workflow \"wf\"`) {
		t.Fatalf("another workflow's token: %d %s", st, body)
	}
	st, body := call("POST", "/job/wf/leaf", "tok-a")
	if st != 200 {
		t.Fatalf("the workflow's token: %d %s", st, body)
	}
	id := strings.Fields(body)[0]
	if st, _ := call("GET", "/request/wf/"+id, "tok-b"); st != 403 {
		t.Fatalf("another workflow's token read a request: %d", st)
	}
	if st, body := call("POST", "/job/other/leaf", "admin"); st != 200 {
		t.Fatalf("the all-workflows token: %d %s", st, body)
	}
}

func TestGatewayServesTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	c := startCluster(t, func(o *gateway.Options) { o.TLSCert, o.TLSKey = cert, key })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	var err error
	waitFor(t, "the TLS listener", 5*time.Second, func() bool {
		resp, err = client.Get(strings.Replace(c.url, "http://", "https://", 1) + "/healthz")
		return err == nil
	})
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %d %v", resp.StatusCode, resp.TLS)
	}
	if plain, err := http.Get(c.url + "/healthz"); err == nil {
		plain.Body.Close()
		if plain.StatusCode != http.StatusBadRequest {
			t.Fatalf("the TLS gateway served plain HTTP: %d", plain.StatusCode)
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jobx-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestRunnersAndGatewayTalkToNSQDOverTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	n, err := embedded.StartNSQD(context.Background(), embedded.NSQDOptions{Dir: dir, TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	c := startClusterWithNSQD(t, n.TCPAddr, func(o *gateway.Options) { o.NSQTLS = tlsCfg })
	c.addRunner(func(o *runner.Options) { o.NSQTLS = tlsCfg })
	c.leafWorkflow("wf")
	assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":4}}`, "").pairs(t), sumsOf(4))
}
