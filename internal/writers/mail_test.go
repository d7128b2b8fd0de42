package writers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
)

// authServer is a real SMTP server that offers STARTTLS and requires PLAIN
// auth as jobx/secret before it takes mail.
type authServer struct {
	addr  string
	pool  *x509.CertPool
	mu    sync.Mutex
	mails []string // "<user> tls=<bool>: <data>"
}

func startAuthSMTP(t testing.TB) *authServer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	s := &authServer{pool: x509.NewCertPool()}
	s.pool.AddCert(cert)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &authSession{srv: s, conn: c}, nil }))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type authSession struct {
	srv  *authServer
	conn *smtp.Conn
	user string
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "jobx" || pass != "secret" {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}
func (s *authSession) Mail(string, *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (s *authSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *authSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	_, tlsOn := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.mails = append(s.srv.mails, s.user+" tls="+map[bool]string{true: "true", false: "false"}[tlsOn]+": "+string(b))
	return nil
}
func (s *authSession) Reset()        {}
func (s *authSession) Logout() error { return nil }

func TestEmailWriterUsesStartTLSAndPlainAuth(t *testing.T) {
	s := startAuthSMTP(t)
	cfg := kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}}
	srv := writers.Server{SMTPAddr: s.addr, SMTPFrom: "jobx@example.com", SMTPUser: "jobx", SMTPPassword: "secret", SMTPTLS: &tls.Config{RootCAs: s.pool}}
	if st := writers.Write(context.Background(), cfg, srv, res); st.State != "written" {
		t.Fatalf("%+v", st)
	}
	s.mu.Lock()
	got := append([]string(nil), s.mails...)
	s.mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "jobx tls=true: ") {
		t.Fatalf("mails %q", got)
	}
	for name, bad := range map[string]writers.Server{
		"wrong password": {SMTPAddr: s.addr, SMTPFrom: "jobx@example.com", SMTPUser: "jobx", SMTPPassword: "nope", SMTPTLS: &tls.Config{RootCAs: s.pool}},
		"no credentials": {SMTPAddr: s.addr, SMTPFrom: "jobx@example.com", SMTPTLS: &tls.Config{RootCAs: s.pool}},
		"untrusted cert": {SMTPAddr: s.addr, SMTPFrom: "jobx@example.com", SMTPUser: "jobx", SMTPPassword: "secret"},
	} {
		if st := writers.Write(context.Background(), cfg, bad, res); st.State != "failed" || !strings.Contains(st.Error, "email writer: send to ops@example.com via "+s.addr) {
			t.Errorf("%s: %+v", name, st)
		}
	}
}

func TestValidateEmailFields(t *testing.T) {
	for _, c := range []struct {
		cfg  kvmodel.WriterConfig
		want string
	}{
		{kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com\r\nBcc: x@y"}}, "result_writer.to"},
		{kvmodel.WriterConfig{Kind: "email", To: []string{"Ops <ops@example.com>"}}, "result_writer.to"},
		{kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}, Subject: "{{.Nope"}, "result_writer.subject"},
		{kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}, Subject: "{{.Nope}}"}, "result_writer.subject"},
	} {
		if err := writers.Validate(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want an error naming %s, got %v", c.cfg, c.want, err)
		}
	}
	ok := kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}, Subject: "JobX %(request_id)s of {{.Job}}"}
	if err := writers.Validate(ok); err != nil {
		t.Fatal(err)
	}
}
