package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLogEvery is the least time between two lines of the Redis clients'
// own (go-redis's, asynq's): while Redis is down, their pools, pollers and
// sentinel watchers report every failed attempt, several a second.
const redisLogEvery = 5 * time.Second

// redisClientLogger is the logger of the Redis clients' own messages: at
// most one line per redisLogEvery, go-redis's and asynq's together; a line
// says how many were left out before it ("left_out").
func redisClientLogger(logger *slog.Logger) *slog.Logger {
	return slog.New(&sparseHandler{next: logger.Handler(), every: redisLogEvery, state: &sparseState{}})
}

// sparseHandler passes at most one record per interval to next and counts
// the rest. Handlers made from it by WithAttrs and WithGroup share its
// count.
type sparseHandler struct {
	next  slog.Handler
	every time.Duration
	state *sparseState
}

type sparseState struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (h *sparseHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *sparseHandler) Handle(ctx context.Context, r slog.Record) error {
	st := h.state
	st.mu.Lock()
	if !st.last.IsZero() && r.Time.Sub(st.last) < h.every {
		st.dropped++
		st.mu.Unlock()
		return nil
	}
	dropped := st.dropped
	st.last, st.dropped = r.Time, 0
	st.mu.Unlock()
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("left_out", dropped))
	}
	return h.next.Handle(ctx, r)
}

func (h *sparseHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sparseHandler{next: h.next.WithAttrs(as), every: h.every, state: h.state}
}

func (h *sparseHandler) WithGroup(name string) slog.Handler {
	return &sparseHandler{next: h.next.WithGroup(name), every: h.every, state: h.state}
}

// redisLog is go-redis's internal Logging interface (redis.SetLogger) on
// slog: its messages become JSON lines like every other.
type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(context.WithoutCancel(ctx), fmt.Sprintf(format, v...))
}

// redisStartTimeout bounds the check of Redis at start-up.
const redisStartTimeout = 5 * time.Second

// redisAuthError is Redis refusing the configured credentials at start-up:
// a configuration error, exit status 2, like a bad flag. Where names the
// server without the user name or password.
type redisAuthError struct {
	Where string
	Err   error
}

func (e *redisAuthError) Error() string {
	return fmt.Sprintf("--redis: %s refused the credentials: %v", e.Where, e.Err)
}

func (e *redisAuthError) Unwrap() error { return e.Err }

// checkRedisAtStart pings Redis once: refused credentials stop the start
// (they will not get better by waiting); an unreachable Redis does not
// (it may come up after refkeeper, and /readyz says it is missing).
func checkRedisAtStart(ctx context.Context, rdb redis.UniversalClient, where string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	err := rdb.Ping(ctx).Err()
	switch {
	case err == nil:
		return nil
	case isRedisAuthError(err):
		return &redisAuthError{Where: where, Err: err}
	}
	logger.Warn("Redis does not answer; serving anyway, /readyz answers 503 until it does", "redis", where, "err", err)
	return nil
}

// isRedisAuthError: the server (or a sentinel) refused the user name or
// password, or wants one and got none.
func isRedisAuthError(err error) bool {
	if redis.IsAuthError(err) {
		return true
	}
	var rerr redis.Error
	msg := err.Error()
	if errors.As(err, &rerr) {
		msg = rerr.Error()
	}
	for _, s := range []string{"WRONGPASS", "NOAUTH", "ERR AUTH", "invalid password", "invalid username-password"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
