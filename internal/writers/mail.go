package writers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// ErrNoSMTP means a mail was due but the runner has no SMTP server.
var ErrNoSMTP = errors.New("no SMTP server configured (runner --smtp-addr and --smtp-from)")

// SendMail delivers msg (a complete RFC 5322 message with CRLF line ends)
// to the recipients through srv's SMTP server: STARTTLS when the server
// offers it, PLAIN auth when srv.SMTPUser is set (net/smtp refuses it
// without TLS unless the server is on localhost). The whole exchange is
// bounded by ctx and srv.SMTPTimeout (default 30s). It is safe for
// concurrent use.
func SendMail(ctx context.Context, srv Server, to []string, msg []byte) error {
	if srv.SMTPAddr == "" || srv.SMTPFrom == "" {
		return ErrNoSMTP
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(srv.SMTPTimeout, 30*time.Second))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", srv.SMTPAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	host, _, _ := net.SplitHostPort(srv.SMTPAddr)
	err = converse(conn, host, srv, to, msg)
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func converse(conn net.Conn, host string, srv Server, to []string, msg []byte) error {
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := &tls.Config{ServerName: host}
		if srv.SMTPTLS != nil {
			cfg = srv.SMTPTLS.Clone()
			cfg.ServerName = cmp.Or(cfg.ServerName, host)
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if srv.SMTPUser != "" {
		if err := c.Auth(smtp.PlainAuth("", srv.SMTPUser, srv.SMTPPassword, host)); err != nil {
			return fmt.Errorf("auth as %s: %w", srv.SMTPUser, err)
		}
	}
	if err := c.Mail(srv.SMTPFrom); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return fmt.Errorf("rcpt %s: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// Header is the header block of jobx's mail: From (with display name),
// To, Subject (RFC 2047-encoded when not ASCII), Date, Message-ID and
// MIME-Version. Values cannot break out of their header: CR and LF are
// replaced by spaces.
func Header(fromName, from string, to []string, subject, idHint string) []byte {
	var b bytes.Buffer
	rcpts := make([]string, len(to))
	for i, a := range to {
		rcpts[i] = (&mail.Address{Address: oneLine(a)}).String()
	}
	var id [8]byte
	rand.Read(id[:])
	domain := "jobx"
	if _, d, ok := strings.Cut(from, "@"); ok && d != "" {
		domain = oneLine(d)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s.%s@%s>\r\nMIME-Version: 1.0\r\n",
		(&mail.Address{Name: fromName, Address: oneLine(from)}).String(), strings.Join(rcpts, ", "),
		mime.QEncoding.Encode("utf-8", oneLine(subject)), time.Now().Format(time.RFC1123Z),
		safeID(idHint), hex.EncodeToString(id[:]), domain)
	return b.Bytes()
}

// QuotedPrintable encodes text for a "Content-Transfer-Encoding:
// quoted-printable" body, so no line exceeds SMTP's limit.
func QuotedPrintable(text string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(text))
	w.Close()
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
}

func safeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return r
		}
		return -1
	}, s)
}
