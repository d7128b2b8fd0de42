package testenv

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Mail is one message received by the test SMTP server.
type Mail struct {
	From string
	To   []string
	Data []byte
}

// SMTPServer is a real SMTP server on loopback that keeps what it receives.
type SMTPServer struct {
	Addr string
	mu   sync.Mutex
	mail []Mail
}

// Inbox returns the messages received so far.
func (s *SMTPServer) Inbox() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mail...)
}

// SMTP starts an SMTP server (github.com/emersion/go-smtp) on 127.0.0.1:0,
// stopped when the test ends.
func SMTP(t testing.TB) *SMTPServer {
	t.Helper()
	s := &SMTPServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type smtpSession struct {
	srv  *SMTPServer
	from string
	to   []string
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	s.srv.mail = append(s.srv.mail, Mail{From: s.from, To: s.to, Data: b})
	s.srv.mu.Unlock()
	return nil
}
