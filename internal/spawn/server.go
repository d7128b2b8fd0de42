package spawn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ErrBadRequest means a request line was not valid JSON for the request
// type; the error's text is fit to send back as Reply.Error.
var ErrBadRequest = errors.New("bad request")

// maxRequest bounds a request line.
const maxRequest = 1 << 24

// ReadRequest reads one request line from conn into req, with the files
// that came with it (normally three: stdin, stdout and stderr). The caller
// owns the files, also when the error is not nil. An error wrapping
// ErrBadRequest means the line was read but does not decode; any other
// means the client hung up or the line never ended.
func ReadRequest(conn *net.UnixConn, req any) ([]*os.File, error) {
	var files []*os.File
	buf := make([]byte, 64*1024)
	oob := make([]byte, syscall.CmsgSpace(3*4))
	var line []byte
	for !bytes.Contains(line, []byte{'\n'}) {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn])
			if perr == nil {
				for _, m := range msgs {
					fds, _ := syscall.ParseUnixRights(&m)
					for _, fd := range fds {
						files = append(files, os.NewFile(uintptr(fd), "fd"))
					}
				}
			}
		}
		line = append(line, buf[:n]...)
		switch {
		case err != nil:
			return files, fmt.Errorf("read request: %w", err)
		case n == 0:
			return files, fmt.Errorf("read request: hung up before a whole line")
		case len(line) > maxRequest:
			return files, fmt.Errorf("read request: longer than %d bytes", maxRequest)
		}
	}
	if err := json.Unmarshal(line[:bytes.IndexByte(line, '\n')], req); err != nil {
		return files, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return files, nil
}

// WriteReply sends one reply line on conn.
func WriteReply(conn *net.UnixConn, r Reply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(b, '\n'))
	return err
}
