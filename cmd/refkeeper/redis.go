package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis timeouts: short, so that a Redis outage turns into a 503 within a few
// seconds instead of a hung request.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 3 * time.Second
	redisPoolTimeout = 4 * time.Second
)

// redisOptions reads the URL forms refkeeper accepts:
//
//	redis://[user:pass@]host:port/db      one server (rediss:// for TLS)
//	redis+sentinel://[:pass@]host:port?addr=host2:port&master_name=m   Sentinel
//	redis+cluster://host:port?addr=host2:port              Cluster
//
// The sentinels or cluster nodes may also be listed in the host part,
// comma-separated (redis+sentinel://h1:p,h2:p?master_name=m). Query
// parameters are go-redis's own (dial_timeout, read_timeout, ...).
//
// Its errors never show the URL's user name or password: they go into the
// one line a bad flag prints and into logs, and url.Parse's errors quote the
// whole URL (go-redis's quote parts of it, where a password that was not
// percent-encoded may have ended up).
func redisOptions(raw string) (*redis.UniversalOptions, error) {
	o, err := parseRedisURL(raw)
	if err == nil {
		return o, nil
	}
	safe := redactRedisURL(raw)
	if safe == raw {
		return nil, err // nothing secret in it
	}
	// Whatever is wrong with the URL without its secrets can be said (the
	// error comes from the redacted text); otherwise they were the problem.
	if _, serr := parseRedisURL(safe); serr != nil {
		return nil, serr
	}
	return nil, errors.New("the part holding the user name or password (not shown) does not parse: percent-encode characters such as @ : / ? # % & in them")
}

// redacted replaces secrets in a URL shown to anyone.
const redacted = "REDACTED"

// redactRedisURL replaces what may be a user name or password in a Redis URL,
// well formed or not: the values of username= and password= parameters (to
// the end, since an unencoded & in the value would cut it short), then
// everything between "://" and the last "@" (a password with an unencoded
// / ? or # moves its "@" past where url.Parse ends the host).
func redactRedisURL(raw string) string {
	s := raw
	for _, key := range []string{"password=", "username="} {
		for _, sep := range []string{"?", "&"} {
			if i := strings.Index(s, sep+key); i >= 0 {
				s = s[:i+len(sep+key)] + redacted
			}
		}
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		start := 0
		if i := strings.Index(s, "://"); i >= 0 && i < at {
			start = i + len("://")
		}
		s = s[:start] + redacted + s[at:]
	}
	return s
}

// parseRedisURL is redisOptions without the care for secrets in errors.
func parseRedisURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	scheme, mode, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis://, rediss://, redis+sentinel:// or redis+cluster://", u.Scheme)
	}
	plain := scheme + strings.TrimPrefix(raw, u.Scheme)
	if mode != "" {
		plain = hostsToAddrParams(plain)
	}
	var o *redis.UniversalOptions
	switch mode {
	case "":
		c, err := redis.ParseURL(plain)
		if err != nil {
			return nil, err
		}
		o = &redis.UniversalOptions{
			Addrs: []string{c.Addr}, DB: c.DB, Username: c.Username, Password: c.Password, TLSConfig: c.TLSConfig,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolTimeout: c.PoolTimeout,
		}
	case "sentinel":
		c, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, err
		}
		if c.MasterName == "" {
			return nil, errors.New("a sentinel URL needs ?master_name=")
		}
		o = &redis.UniversalOptions{
			Addrs: c.SentinelAddrs, MasterName: c.MasterName, DB: c.DB, Username: c.Username, Password: c.Password,
			SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword, TLSConfig: c.TLSConfig,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolTimeout: c.PoolTimeout,
		}
	case "cluster":
		c, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, err
		}
		o = &redis.UniversalOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLSConfig: c.TLSConfig, IsClusterMode: true,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolTimeout: c.PoolTimeout,
		}
	default:
		return nil, fmt.Errorf("scheme %q: unknown mode %q", u.Scheme, mode)
	}
	// Timeouts the URL leaves unset fail fast; one retry rides out a blink.
	o.DialTimeout = pick(o.DialTimeout, redisDialTimeout)
	o.ReadTimeout = pick(o.ReadTimeout, redisIOTimeout)
	o.WriteTimeout = pick(o.WriteTimeout, redisIOTimeout)
	o.PoolTimeout = pick(o.PoolTimeout, redisPoolTimeout)
	o.MaxRetries = 1
	// Maintenance notifications are a Redis Enterprise handshake; against
	// any other server "auto" costs a failed command on every new connection.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o, nil
}

// hostsToAddrParams rewrites a URL listing several hosts in its host part,
// comma-separated, into go-redis's form: the first host stays, the others
// become addr parameters. (go-redis would take "h1:p,h2:p" for one host
// name, which never resolves.)
func hostsToAddrParams(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	list := strings.Split(hosts, ",")
	if len(list) < 2 {
		return raw
	}
	path, fragment, _ := strings.Cut(tail, "#")
	path, query, _ := strings.Cut(path, "?")
	params := make([]string, 0, len(list)-1)
	for _, h := range list[1:] {
		params = append(params, "addr="+url.QueryEscape(h))
	}
	if query != "" {
		params = append(params, query)
	}
	out := scheme + "://" + userinfo + list[0] + path + "?" + strings.Join(params, "&")
	if fragment != "" {
		out += "#" + fragment
	}
	return out
}

// describeRedis says where the options point, for messages: the address,
// or the master name and its sentinels, or the cluster's nodes; never a
// user name or password.
func describeRedis(o *redis.UniversalOptions) string {
	switch {
	case o.MasterName != "":
		return fmt.Sprintf("master %q via sentinels %s", o.MasterName, strings.Join(o.Addrs, ","))
	case o.IsClusterMode || len(o.Addrs) > 1:
		return "cluster " + strings.Join(o.Addrs, ",")
	case len(o.Addrs) == 1:
		return o.Addrs[0]
	}
	return "?"
}

func pick(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// embeddedRedis is an in-process Redis for trying refkeeper on one machine.
// It keeps nothing across restarts, and miniredis does not expire keys on
// its own, so a ticker moves its clock along.
type embeddedRedis struct {
	server *miniredis.Miniredis
	stop   chan struct{}
	done   chan struct{}
}

func startEmbeddedRedis(logger *slog.Logger) (*embeddedRedis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("starting embedded redis: %w", err)
	}
	e := &embeddedRedis{server: m, stop: make(chan struct{}), done: make(chan struct{})}
	go e.tick()
	logger.Warn("using an embedded in-process Redis: NOT durable, pins and tasks are lost on restart; set --redis for real use",
		"addr", m.Addr())
	return e, nil
}

func (e *embeddedRedis) tick() {
	defer close(e.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			e.server.FastForward(now.Sub(last))
			last = now
		}
	}
}

func (e *embeddedRedis) Addr() string { return e.server.Addr() }

func (e *embeddedRedis) Close() {
	close(e.stop)
	<-e.done
	e.server.Close()
}
