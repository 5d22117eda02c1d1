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
//	redis+sentinel://[:pass@]host:port,...?master_name=m   Sentinel
//	redis+cluster://host:port?addr=host2:port              Cluster
//
// Query parameters are go-redis's own (dial_timeout, read_timeout, ...).
func redisOptions(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	scheme, mode, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis://, rediss://, redis+sentinel:// or redis+cluster://", u.Scheme)
	}
	plain := scheme + strings.TrimPrefix(raw, u.Scheme)
	switch mode {
	case "":
		o, err := redis.ParseURL(plain)
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{
			Addrs: []string{o.Addr}, DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
			DialTimeout: pick(o.DialTimeout, redisDialTimeout), ReadTimeout: pick(o.ReadTimeout, redisIOTimeout),
			WriteTimeout: pick(o.WriteTimeout, redisIOTimeout), PoolTimeout: pick(o.PoolTimeout, redisPoolTimeout),
			MaxRetries: 1,
		}, nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, errors.New("a sentinel URL needs ?master_name=")
		}
		return &redis.UniversalOptions{
			Addrs: o.SentinelAddrs, MasterName: o.MasterName, DB: o.DB, Username: o.Username, Password: o.Password,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, TLSConfig: o.TLSConfig,
			DialTimeout: pick(o.DialTimeout, redisDialTimeout), ReadTimeout: pick(o.ReadTimeout, redisIOTimeout),
			WriteTimeout: pick(o.WriteTimeout, redisIOTimeout), PoolTimeout: pick(o.PoolTimeout, redisPoolTimeout),
			MaxRetries: 1,
		}, nil
	case "cluster":
		o, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{
			Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig, IsClusterMode: true,
			DialTimeout: pick(o.DialTimeout, redisDialTimeout), ReadTimeout: pick(o.ReadTimeout, redisIOTimeout),
			WriteTimeout: pick(o.WriteTimeout, redisIOTimeout), PoolTimeout: pick(o.PoolTimeout, redisPoolTimeout),
			MaxRetries: 1,
		}, nil
	}
	return nil, fmt.Errorf("scheme %q: unknown mode %q", u.Scheme, mode)
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
