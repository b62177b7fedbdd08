// Package memspace is an in-process π-space: named, persistent, one-way
// byte channels kept in memory, with the semantics rt expects of a job's
// space.
//
// A writer never blocks. Data stays after its writer is gone; a reader
// attached late reads from any offset, and reading never deletes. Creating
// a channel again with the key of an existing instance resumes that
// instance: bytes written below its stored length are compared with what is
// stored and dropped, so a restarted writer that replays its output never
// duplicates it. All methods are safe for concurrent use.
package memspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Errors returned by the space.
var (
	ErrClosed   = errors.New("memspace: closed")
	ErrDiverged = errors.New("memspace: replayed bytes differ from stored bytes")
	ErrGap      = errors.New("memspace: write offset beyond stored length")
	ErrSealed   = errors.New("memspace: write past the end of a sealed channel")
)

// Space holds channels by name. The zero value is not usable; call New.
type Space struct {
	mu      sync.Mutex
	chans   map[string][]*instance // creation order
	nextID  uint64
	created chan struct{} // closed and replaced when an instance is created
}

type instance struct {
	id   uint64
	key  string
	mu   sync.Mutex
	data chunks
	seal bool
	wake chan struct{} // non-nil while a reader waits; closed on change
}

// chunks is an append-only byte sequence stored in pieces, so growing it
// never copies what is already stored.
type chunks struct {
	parts  [][]byte
	starts []int64 // offset of each part
	n      int64
}

const minChunk = 64 << 10

func (c *chunks) len() int64 { return c.n }

func (c *chunks) append(p []byte) {
	if k := len(c.parts); k > 0 {
		last := c.parts[k-1]
		m := copy(last[len(last):cap(last)], p)
		c.parts[k-1] = last[:len(last)+m]
		c.n += int64(m)
		p = p[m:]
	}
	if len(p) == 0 {
		return
	}
	part := make([]byte, len(p), max(len(p), minChunk))
	copy(part, p)
	c.parts = append(c.parts, part)
	c.starts = append(c.starts, c.n)
	c.n += int64(len(p))
}

// at returns the stored bytes from off to the end of off's part.
func (c *chunks) at(off int64) []byte {
	i := sort.Search(len(c.starts), func(i int) bool { return c.starts[i] > off }) - 1
	return c.parts[i][off-c.starts[i]:]
}

// equal reports whether p matches the stored bytes at off.
func (c *chunks) equal(off int64, p []byte) bool {
	for len(p) > 0 {
		s := c.at(off)
		m := min(len(s), len(p))
		if !bytes.Equal(s[:m], p[:m]) {
			return false
		}
		p, off = p[m:], off+int64(m)
	}
	return true
}

// New returns an empty space.
func New() *Space {
	return &Space{chans: make(map[string][]*instance), created: make(chan struct{})}
}

// Create opens a writer on name. A non-empty key that matches an existing
// instance of name resumes it; otherwise a new instance is appended. offset
// must not exceed the instance's stored length.
func (s *Space) Create(ctx context.Context, name, key string, offset int64) (*Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.findKey(name, key)
	if in == nil {
		s.nextID++
		in = &instance{id: s.nextID, key: key}
		s.chans[name] = append(s.chans[name], in)
		close(s.created)
		s.created = make(chan struct{})
	}
	in.mu.Lock()
	n := in.data.len()
	in.mu.Unlock()
	if offset < 0 || offset > n {
		return nil, fmt.Errorf("memspace: create %q at %d (length %d): %w", name, offset, n, ErrGap)
	}
	return &Writer{in: in, off: offset}, nil
}

func (s *Space) findKey(name, key string) *instance {
	if key == "" {
		return nil
	}
	for _, in := range s.chans[name] {
		if in.key == key {
			return in
		}
	}
	return nil
}

// Attach opens a reader on the oldest instance of name at offset, waiting
// until an instance exists or ctx ends.
func (s *Space) Attach(ctx context.Context, name string, offset int64) (*Reader, error) {
	for {
		s.mu.Lock()
		list := s.chans[name]
		wait := s.created
		s.mu.Unlock()
		if len(list) > 0 {
			return &Reader{in: list[0], off: offset}, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Stat reports the newest instance of name.
func (s *Space) Stat(ctx context.Context, name string) (length int64, sealed, found bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, false, false, err
	}
	s.mu.Lock()
	list := s.chans[name]
	s.mu.Unlock()
	if len(list) == 0 {
		return 0, false, false, nil
	}
	in := list[len(list)-1]
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.data.len(), in.seal, true, nil
}

// notify wakes waiting readers. Callers hold in.mu.
func (in *instance) notify() {
	if in.wake != nil {
		close(in.wake)
		in.wake = nil
	}
}

// Writer appends to one instance. Its methods may be called concurrently,
// though concurrent writes interleave in an unspecified order.
type Writer struct {
	in     *instance
	mu     sync.Mutex
	off    int64
	closed bool
}

// Write appends p at the writer's offset, comparing and dropping the part
// that lies below the stored length. It never blocks on a reader, and p may
// be reused after it returns.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	in := w.in
	in.mu.Lock()
	defer in.mu.Unlock()
	n := in.data.len()
	if w.off > n {
		return 0, ErrGap
	}
	dup := min(int64(len(p)), n-w.off)
	if !in.data.equal(w.off, p[:dup]) {
		return 0, fmt.Errorf("memspace: at offset %d: %w", w.off, ErrDiverged)
	}
	rest := p[dup:]
	if len(rest) > 0 {
		if in.seal {
			return int(dup), ErrSealed
		}
		in.data.append(rest)
		in.notify()
	}
	w.off += int64(len(p))
	return len(p), nil
}

// Close seals the instance: readers at its end then get io.EOF. It is
// idempotent.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.in.mu.Lock()
	w.in.seal = true
	w.in.notify()
	w.in.mu.Unlock()
	return nil
}

// Reader reads one instance from an offset. It must not be used from
// several goroutines at once.
type Reader struct {
	in     *instance
	off    int64
	closed bool
}

// ReadContext reads at least one byte, waiting for the writer if needed. It
// returns io.EOF at the end of a sealed instance.
func (r *Reader) ReadContext(ctx context.Context, p []byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	in := r.in
	for {
		in.mu.Lock()
		if r.off < in.data.len() {
			n := copy(p, in.data.at(r.off))
			in.mu.Unlock()
			r.off += int64(n)
			return n, nil
		}
		if in.seal {
			in.mu.Unlock()
			return 0, io.EOF
		}
		if in.wake == nil {
			in.wake = make(chan struct{})
		}
		wake := in.wake
		in.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Close releases the reader. It is idempotent.
func (r *Reader) Close() error {
	r.closed = true
	return nil
}
