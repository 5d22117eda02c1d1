package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
)

// serveDebug serves Go's pprof profiles on their own listener, apart from
// the API: they need no token, so they must never share its address. It
// answers a function that stops the listener.
func serveDebug(addr string, logger *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	// Not pprof.Cmdline: the command line may carry --tokens.
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, strings.Join(redactArgs(os.Args), "\x00"))
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--debug-listen): %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	go func() { _ = srv.Serve(ln) }()
	logger.Warn("serving pprof profiles without a token", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// flagShown says whether a flag's value may be shown: it is a flag of
// serveFlags not marked holdsSecret. A name serve does not know is hidden,
// value and all. (--redis is shown with its user name and password
// redacted, by redactFlagValue.)
func flagShown(name string) bool {
	f, ok := lookupServeFlag(name)
	return ok && !f.secret
}

// boolFlag says which flags take no separate value: the argument after one
// is not its value.
func boolFlag(name string) bool { return name == "demo" || name == "h" || name == "help" }

// redactArgs is argv as /debug/pprof/cmdline shows it: the program, the
// command and the flag names as given, the values of flags not known to be
// harmless replaced, and anything after the flags (which serve refuses
// anyway) replaced too.
func redactArgs(argv []string) []string {
	out := make([]string, 0, len(argv))
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case i == 0 || (i == 1 && !strings.HasPrefix(a, "-")):
			out = append(out, a) // the program and its command
		case a == "--" || !strings.HasPrefix(a, "-") || a == "-":
			for range argv[i:] {
				out = append(out, redacted)
			}
			return out
		default:
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			dashes := a[:len(a)-len(strings.TrimLeft(a, "-"))]
			if !hasValue && !boolFlag(name) && i+1 < len(argv) {
				i++
				value, hasValue = argv[i], true
				out = append(out, dashes+name)
				out = append(out, redactFlagValue(name, value))
				continue
			}
			if hasValue {
				a = dashes + name + "=" + redactFlagValue(name, value)
			}
			out = append(out, a)
		}
	}
	return out
}

func redactFlagValue(name, value string) string {
	switch {
	case flagShown(name):
		return value
	case name == "redis":
		return redactRedisURL(value)
	}
	return redacted
}
