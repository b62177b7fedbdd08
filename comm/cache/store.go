package cache

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Store keeps channel payloads as fixed-size segments, in memory up to a
// bound and spilled to disk beyond it. All methods may be called
// concurrently; see the package documentation for the rules.
type Store struct {
	cfg    Config
	runDir string // private spill directory; "" when memory only

	mu       sync.RWMutex
	closed   bool
	spaces   map[string]map[uint64]*stream
	nstreams int

	ops       sync.WaitGroup // calls in progress; Close waits for them
	done      chan struct{}  // closed by Close: wakes Wait
	closeOnce sync.Once
	closeErr  error

	gen   atomic.Uint64 // stream generation, keeps file names unique
	clock atomic.Int64  // logical LRU clock

	memBytes  atomic.Int64
	diskBytes atomic.Int64
	segments  atomic.Int64
	trimBytes atomic.Int64
	spills    atomic.Int64
	loads     atomic.Int64

	spillMu  sync.Mutex
	victims  []victim // scratch of maybeSpill, guarded by spillMu
	spillHdr []byte   // aligned scratch header block of writeSpill, guarded by spillMu

	openDirect   func(path string, flag int) (*os.File, error) // opens a spill file for O_DIRECT writes
	noDirect     atomic.Bool                                   // no Config.DirectIO, or O_DIRECT failed here: write spill files buffered
	directSpills atomic.Int64                                  // spill files written with O_DIRECT so far

	fileMu    sync.Mutex
	freeFiles []string // spill files kept for reuse (retireFile)
	fileSeq   uint64   // names the free files

	lruMu    sync.Mutex
	resident map[*segment]struct{} // immutable segments held in memory

	freeMu     sync.Mutex
	freeList   [][]byte // free SegmentSize buffers, last freed on top
	freeClosed bool     // set by Close: keep nothing more
	freeBytes  atomic.Int64
	recycled   atomic.Int64

	filler Filler // Config.Memory when it Fills: buffers are written with its Fill, and fresh ones reserved, not faulted in

	prefillSig  chan struct{}  // wakes the prefilling goroutine (see Config.Prefill); nil without one
	prefillWant int64          // free bytes it keeps ready: Prefill buffers, as many as RecycleBytes lets the free list hold
	prefilled   atomic.Int64   // fresh buffers it put on the free list
	prefillDone sync.WaitGroup // Close waits for it
}

// stream is one key's payload. Lock order: wmu, then mu (see LOCKS.md).
type stream struct {
	key Key
	gen uint64

	// wmu serialises the writers of the stream: Append steps, Seal and
	// destroy. The fields under it are touched by wmu holders only.
	wmu sync.Mutex
	// The last Trim's start and the first segment past what it dropped:
	// a consumer trims a range that grows at its end, and the next Trim
	// from the same start looks at the new segments only.
	trimFrom int64
	trimNext int

	// mu guards what readers see; writers change these fields while
	// holding both wmu and mu.
	mu      sync.RWMutex
	length  int64
	sealed  bool
	deleted bool
	segs    []*segment    // never modified in place, only appended to
	tail    []byte        // open tail segment's bytes (cap allocated); nil if none
	tailBuf *buffer       // the buffer holding tail; nil if none
	wake    chan struct{} // closed on every change, created by Wait
}

// wakeLocked wakes every Wait on st. st.mu must be held for writing.
func (st *stream) wakeLocked() {
	if st.wake != nil {
		close(st.wake)
		st.wake = nil
	}
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	MemoryBytes  int64 // bytes of segment buffers in use (allocated capacity)
	FreeBytes    int64 // bytes of free segment buffers kept for reuse (Config.RecycleBytes)
	Recycled     int64 // segment buffers taken from the free list so far
	Prefilled    int64 // fresh segment buffers put on the free list ahead of need (Config.Prefill)
	SpilledBytes int64 // payload bytes in spill files
	Streams      int   // streams (keys) held
	Segments     int64 // segments held, open tails included
	TrimmedBytes int64 // payload bytes discarded by Trim so far
	Spills       int64 // segments written to the spill directory so far
	Loads        int64 // spilled segments read back into memory so far
}

// Open validates cfg and returns a Store. With cfg.Dir set it creates
// cfg.Dir if missing and a private subdirectory in it for its spill files.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:      cfg,
		spaces:   make(map[string]map[uint64]*stream),
		done:     make(chan struct{}),
		resident: make(map[*segment]struct{}),

		openDirect: openDirectFile,
	}
	s.noDirect.Store(!cfg.DirectIO)
	if f, ok := cfg.Memory.(Filler); ok && f.Fills() {
		s.filler = f
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("cache: open: %w", err)
		}
		s.runDir, err = os.MkdirTemp(cfg.Dir, "cache-")
		if err != nil {
			return nil, fmt.Errorf("cache: open: %w", err)
		}
	}
	size := int64(cfg.SegmentSize)
	if s.prefillWant = min(int64(cfg.Prefill), cfg.RecycleBytes/size) * size; s.prefillWant > 0 {
		s.prefillSig = make(chan struct{}, 1)
		s.prefillDone.Add(1)
		go s.prefillLoop()
		s.wantPrefill()
	}
	return s, nil
}

// Config returns the validated configuration of s.
func (s *Store) Config() Config { return s.cfg }

// SpillDir returns the private directory holding s's spill files, or ""
// for a memory-only store. Close removes it.
func (s *Store) SpillDir() string { return s.runDir }

// acquire looks k up and registers a call in progress; the caller must call
// s.ops.Done when it returns nil error.
func (s *Store) acquire(k Key) (*stream, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	st := s.spaces[k.Space][k.Instance]
	if st == nil {
		return nil, ErrNotFound
	}
	s.ops.Add(1)
	return st, nil
}

// acquireOrCreate is acquire that creates the stream if create is true.
func (s *Store) acquireOrCreate(k Key, create bool) (*stream, error) {
	st, err := s.acquire(k)
	if !errors.Is(err, ErrNotFound) || !create {
		return st, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	sp := s.spaces[k.Space]
	if sp == nil {
		sp = make(map[uint64]*stream)
		s.spaces[k.Space] = sp
	}
	st = sp[k.Instance]
	if st == nil {
		st = &stream{key: k, gen: s.gen.Add(1)}
		sp[k.Instance] = st
		s.nstreams++
	}
	s.ops.Add(1)
	return st, nil
}

// enter registers a call in progress that needs no stream.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.ops.Add(1)
	return nil
}

// Stat returns the length of k's stream and whether it is sealed.
// Errors: ErrNotFound, ErrClosed.
func (s *Store) Stat(k Key) (length int64, sealed bool, err error) {
	st, err := s.acquire(k)
	if err != nil {
		return 0, false, fmt.Errorf("cache: stat %v: %w", k, err)
	}
	defer s.ops.Done()
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.deleted {
		return 0, false, fmt.Errorf("cache: stat %v: %w", k, ErrNotFound)
	}
	return st.length, st.sealed, nil
}

// Delete removes k's stream, its memory and its spill files (the store
// keeps up to 512 MiB of them, renamed, for later spills to overwrite:
// see the package documentation). Wait calls on
// it return ErrNotFound; a later Append creates a new, empty stream.
// Errors: ErrNotFound, ErrClosed.
func (s *Store) Delete(k Key) error {
	if err := s.enter(); err != nil {
		return fmt.Errorf("cache: delete %v: %w", k, err)
	}
	defer s.ops.Done()
	s.mu.Lock()
	sp := s.spaces[k.Space]
	st := sp[k.Instance]
	if st != nil {
		delete(sp, k.Instance)
		if len(sp) == 0 {
			delete(s.spaces, k.Space)
		}
		s.nstreams--
	}
	s.mu.Unlock()
	if st == nil {
		return fmt.Errorf("cache: delete %v: %w", k, ErrNotFound)
	}
	return s.destroy(st)
}

// DeleteSpace deletes every stream of space, as Delete does. A space that
// holds no stream is not an error. Errors: ErrClosed.
func (s *Store) DeleteSpace(space string) error {
	if err := s.enter(); err != nil {
		return fmt.Errorf("cache: delete space %q: %w", space, err)
	}
	defer s.ops.Done()
	s.mu.Lock()
	sp := s.spaces[space]
	delete(s.spaces, space)
	s.nstreams -= len(sp)
	s.mu.Unlock()
	var errs []error
	for _, st := range sp {
		errs = append(errs, s.destroy(st))
	}
	return errors.Join(errs...)
}

// destroy marks st deleted, wakes its waiters and frees its segments. st
// must already be out of the map.
func (s *Store) destroy(st *stream) error {
	st.wmu.Lock()
	st.mu.Lock()
	st.deleted = true
	segs, tail, tb := st.segs, st.tail, st.tailBuf
	st.segs, st.tail, st.tailBuf = nil, nil, nil
	st.wakeLocked()
	st.mu.Unlock()
	st.wmu.Unlock()
	if tb != nil {
		s.memBytes.Add(-int64(cap(tail)))
		s.release(tb)
	}
	var errs []error
	n := 0
	for _, seg := range segs {
		if seg.trimmed {
			continue // dropped, and counted, already
		}
		n++
		if err := s.drop(seg, ErrNotFound); err != nil {
			errs = append(errs, fmt.Errorf("cache: delete %v: %w", st.key, err))
		}
	}
	s.segments.Add(-int64(n))
	return errors.Join(errs...)
}

// Stats returns a snapshot of s's counters. It works after Close.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	n := s.nstreams
	s.mu.RUnlock()
	return Stats{
		MemoryBytes:  s.memBytes.Load(),
		FreeBytes:    s.freeBytes.Load(),
		Recycled:     s.recycled.Load(),
		Prefilled:    s.prefilled.Load(),
		SpilledBytes: s.diskBytes.Load(),
		Streams:      n,
		Segments:     s.segments.Load(),
		TrimmedBytes: s.trimBytes.Load(),
		Spills:       s.spills.Load(),
		Loads:        s.loads.Load(),
	}
}

// Close makes every later call return ErrClosed, wakes every Wait with
// ErrClosed, waits for the calls in progress, frees all streams and
// removes the private spill directory (never cfg.Dir itself, nor anything
// else in it). It is idempotent: later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		spaces := s.spaces
		s.spaces = make(map[string]map[uint64]*stream)
		s.nstreams = 0
		s.mu.Unlock()
		close(s.done)
		s.ops.Wait()
		s.prefillDone.Wait()
		var errs []error
		for _, sp := range spaces {
			for _, st := range sp {
				errs = append(errs, s.destroy(st))
			}
		}
		s.closeFree()
		if s.runDir != "" {
			errs = append(errs, os.RemoveAll(s.runDir))
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("cache: close: %w", err)
		}
	})
	return s.closeErr
}
