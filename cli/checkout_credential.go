package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// credentialServer hands git the fetch token over a private Unix socket,
// speaking the protocol of git's own credential cache daemon: git runs
// `git credential-cache --socket S get`, which connects to S, and this
// answers with the token as the password of HTTP basic auth (which the
// server accepts with any user name).
//
// Why this and not http.extraHeader in GIT_CONFIG_* variables: the token
// then lives only in this process's memory and crosses to git over a socket
// in a directory only this user can enter. It is in no child's argv (which
// every user can read in /proc), in no child's environment (which git hands
// on to every program it runs: remote helpers, hooks, ssh, askpass), in no
// file and in no URL. It is also given only for the fetch URL's protocol and
// host, so a redirect elsewhere does not get it.
type credentialServer struct {
	dir      string
	ln       net.Listener
	protocol string
	host     string
	token    string
	wg       sync.WaitGroup
}

// credentialUser is the user name git sends along; the server ignores it.
const credentialUser = "refkeeper-checkout"

func startCredentialServer(fetchURL *url.URL, token string) (*credentialServer, error) {
	dir, err := os.MkdirTemp("", "refkeeper-cred-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("credential socket: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "socket"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("credential socket: %w", err)
	}
	s := &credentialServer{dir: dir, ln: ln, protocol: fetchURL.Scheme, host: fetchURL.Host, token: token}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// helper is the value of credential.helper that points git at the socket.
func (s *credentialServer) helper() string {
	return "cache --socket=" + shellQuote(filepath.Join(s.dir, "socket"))
}

func (s *credentialServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.answer(conn)
	}
}

// answer reads one request ("action=get", "timeout=…", then the
// credential's attributes, up to EOF) and answers a get for our host.
func (s *credentialServer) answer(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	attrs := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(conn, 64<<10))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			if _, seen := attrs[k]; !seen {
				attrs[k] = v
			}
		}
	}
	if attrs["action"] != "get" || attrs["protocol"] != s.protocol || attrs["host"] != s.host {
		return // store, erase, exit, or another host: nothing to say
	}
	_, _ = fmt.Fprintf(conn, "username=%s\npassword=%s\n", credentialUser, s.token)
}

func (s *credentialServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return errors.Join(err, os.RemoveAll(s.dir))
}

// shellQuote quotes s for the shell git runs credential helpers with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
