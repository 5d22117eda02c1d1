package packcache

import (
	"context"
	"errors"
	"io"
	"os"
)

// ErrClosing is what a reader gets when the cache closes under it.
var ErrClosing = errors.New("pack cache: closing")

// Share answers a reader of the entry keyed by parts (hashed, each part
// framed, in a namespace of their own: no hook key is ever one of them),
// starting one generation with gen when there is no entry to share. hit
// says whether it read an entry that was there (also while it is still
// generated). ok is false when the request bypasses the cache (off, the
// disk below its floor, an entry that could not be made): produce the
// answer as without it. The reader ends when ctx does; the generation
// does not. It is counted in refkeeper_pack_cache_requests_total as the
// hook's requests are.
func (c *Cache) Share(ctx context.Context, parts [][]byte, gen Generate) (r *Reader, hit, ok bool) {
	if c.off || c.belowFloor() {
		c.metrics.result("bypass")
		return nil, false, false
	}
	k := hashParts(append([][]byte{[]byte(shareNamespace)}, parts...))
	e, f, hit, err := c.open(k, gen)
	if err != nil {
		c.logger.Warn("pack cache: opening an entry", "err", err)
		c.metrics.result("bypass")
		return nil, false, false
	}
	if hit {
		c.metrics.result("hit")
	} else {
		c.metrics.result("miss")
	}
	return &Reader{c: c, e: e, f: f, stop: c.ctx.Done(), ctx: ctx}, hit, true
}

// Reader reads one entry from its start, following its writer: a read
// waits for the bytes the generation has not written yet. It ends with
// io.EOF once the generation is done and whole, with the generation's
// error if it failed, with ErrClosing at Close, or with ctx's error when
// the reader's request ends.
type Reader struct {
	c    *Cache
	e    *entry
	f    *os.File
	off  int64
	stop <-chan struct{}
	ctx  context.Context
}

// Read reads the entry's next bytes, waiting for them if they are not
// written yet.
func (r *Reader) Read(p []byte) (int, error) {
	for {
		size, finished, genErr, changed := r.e.state()
		if r.off < size {
			n, err := r.f.ReadAt(p[:min(int64(len(p)), size-r.off)], r.off)
			r.off += int64(n)
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if finished {
			if genErr != nil {
				return 0, genErr
			}
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.stop:
			return 0, ErrClosing
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// Rest answers, once the generation is done and whole, the entry's bytes
// from offset from on as an *io.LimitedReader of its *os.File (which
// net/http sends with sendfile) and their count; ok is false while it is
// still generated (or failed): read it with Read then. It moves the
// file's offset, which Read does not use.
func (r *Reader) Rest(from int64) (rest *io.LimitedReader, n int64, ok bool) {
	size, finished, genErr, _ := r.e.state()
	if !finished || genErr != nil || from > size {
		return nil, 0, false
	}
	if _, err := r.f.Seek(from, io.SeekStart); err != nil {
		return nil, 0, false
	}
	return &io.LimitedReader{R: r.f, N: size - from}, size - from, true
}

// Close closes the reader's file.
func (r *Reader) Close() error {
	r.c.left(r.e)
	return r.f.Close()
}
