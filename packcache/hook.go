package packcache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// The hook and the server speak over the socket:
//
//	hook -> server: a 4-byte big-endian length, then a request (JSON)
//	server -> hook: one byte, answerBypass or answerPack; after
//	  answerPack, frames (a 4-byte length, that many bytes of the pack),
//	  an empty frame, and one byte: 0 the pack is whole, 1 it failed.
const (
	answerBypass = 'B'
	answerPack   = 'P'
	// maxRequest bounds a request: upload-pack's stdin is its wants,
	// shallows and haves, at most what a buffered negotiation holds.
	maxRequest = 64 << 20
	// requestTimeout bounds reading a request: the hook sends it at once.
	requestTimeout = 30 * time.Second
)

// request is what the hook hands to the server.
type request struct {
	Ticket string   `json:"ticket"`
	Args   []string `json:"args"`
	Stdin  []byte   `json:"stdin"`
}

func (c *Cache) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.listener.AcceptUnix()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.logger.Warn("pack cache: accepting a hook", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.conns[conn] = true
		c.mu.Unlock()
		if c.ctx.Err() != nil { // Close ran before it was listed
			conn.Close()
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handle(conn)
			c.mu.Lock()
			delete(c.conns, conn)
			c.mu.Unlock()
			conn.Close()
		}()
	}
}

// peerIsUs reports whether the socket's peer runs as this process's user:
// the socket's directory already keeps others out, this holds if its
// mode is ever changed.
func peerIsUs(conn *net.UnixConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return false
	}
	return int(cred.Uid) == os.Getuid()
}

// handle answers one hook: a pack from the cache, or bypass (run
// pack-objects yourself, as without the cache) for a peer or ticket it
// does not know, arguments it does not serve, or a disk below its floor.
func (c *Cache) handle(conn *net.UnixConn) {
	if !peerIsUs(conn) {
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := readRequest(conn)
	if err != nil {
		c.logger.Warn("pack cache: reading a hook's request", "err", err)
		return
	}
	tk, live := c.take(req.Ticket)
	args, ok := packArgs(req.Args)
	if !live || !ok || c.belowFloor() {
		c.metrics.result("bypass")
		_, _ = conn.Write([]byte{answerBypass})
		return
	}
	k := key(tk.project, tk.version, args, req.Stdin)
	e, f, hit, err := c.open(k, c.packObjects(tk, args, req.Stdin))
	if err != nil {
		c.logger.Warn("pack cache: opening an entry", "project", tk.project, "err", err)
		c.metrics.result("bypass")
		_, _ = conn.Write([]byte{answerBypass})
		return
	}
	r := &Reader{c: c, e: e, f: f, stop: c.ctx.Done(), ctx: context.Background()}
	defer r.Close()
	if hit {
		c.metrics.result("hit")
	} else {
		c.metrics.result("miss")
	}
	// The hook's peer closing (upload-pack ended) shows as a write error.
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write([]byte{answerPack}); err != nil {
		return
	}
	var hdr [4]byte
	buf := make([]byte, 64<<10)
	status := byte(0)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			bufs := net.Buffers{hdr[:], buf[:n]}
			if _, werr := bufs.WriteTo(conn); werr != nil {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			status = 1
			break
		}
	}
	_, _ = conn.Write([]byte{0, 0, 0, 0, status})
}

func readRequest(r io.Reader) (request, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return request{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRequest {
		return request{}, fmt.Errorf("a request of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return request{}, err
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return request{}, err
	}
	return req, nil
}

// HookCommand is the command of the hook, after the executable: the
// binary that serves also runs its hook.
const HookCommand = "pack-objects-hook"

// RunHook is the pack-objects hook: upload-pack runs it as
// `<hook> <socket> git [--shallow-file ""] pack-objects <options>`, with
// the request's wants, shallows and haves on stdin and the pack expected
// on stdout. It hands all of it to the server at the socket and copies the
// pack it answers. Told to bypass, or when the server cannot be reached,
// it runs the git command itself, in its own environment (upload-pack's),
// as upload-pack would have without the hook. It answers the exit status.
func RunHook(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 3 || args[1] != "git" {
		fmt.Fprintln(stderr, "usage: refkeeper "+HookCommand+" SOCKET git pack-objects ... (run by git upload-pack)")
		return 2
	}
	sock, command := args[0], args[1:]
	in, err := io.ReadAll(io.LimitReader(stdin, maxRequest+1))
	if err != nil || len(in) > maxRequest {
		fmt.Fprintln(stderr, "pack-objects hook: reading stdin:", err)
		return 1
	}
	if code, served := fromServer(ctx, sock, request{Ticket: getenv(TicketEnv), Args: command, Stdin: in}, stdout, stderr); served {
		return code
	}
	cmd := gitexec.Command(ctx, gitexec.Process{Git: command[0], Env: os.Environ()}, command[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(stderr, "pack-objects hook:", err)
		if code := gitexec.ExitCode(err); code > 0 {
			return code
		}
		return 1
	}
	return 0
}

// fromServer asks the server for the pack; served is false when it said
// to bypass or could not be asked before anything was written.
func fromServer(ctx context.Context, sock string, req request, stdout, stderr io.Writer) (code int, served bool) {
	if req.Ticket == "" {
		return 0, false
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return 0, false
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	bufs := net.Buffers{hdr[:], body}
	if _, err := bufs.WriteTo(conn); err != nil {
		return 0, false
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	answer, err := r.ReadByte()
	if err != nil || answer != answerPack {
		return 0, false
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			fmt.Fprintln(stderr, "pack-objects hook: the pack cache went away:", err)
			return 1, true
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			break
		}
		for n > 0 {
			m, err := r.Read(buf[:min(n, len(buf))])
			if m > 0 {
				if _, werr := stdout.Write(buf[:m]); werr != nil {
					return 1, true // upload-pack went away
				}
				n -= m
			}
			if err != nil && n > 0 {
				fmt.Fprintln(stderr, "pack-objects hook: the pack cache went away:", err)
				return 1, true
			}
		}
	}
	status, err := r.ReadByte()
	if err != nil || status != 0 {
		fmt.Fprintln(stderr, "pack-objects hook: generating the pack failed (see the server's log)")
		return 1, true
	}
	return 0, true
}
