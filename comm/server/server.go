package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pispace/pispace/comm/cache"
	"github.com/pispace/pispace/comm/internal/local"
	"github.com/pispace/pispace/comm/internal/shm"
)

// ErrServerClosed is returned by [Server.Serve] after [Server.Close].
var ErrServerClosed = errors.New("server: closed")

// Config configures a [Server]. The zero value is valid.
type Config struct {
	// Dir is where the cache spills payload beyond MemoryBytes. Empty means
	// memory only.
	Dir string
	// MemoryBytes bounds the payload held in memory. Zero means 256 MiB.
	MemoryBytes int64
	// SegmentSize is the cache segment size. Zero means 1 MiB.
	SegmentSize int
	// MaxPayload bounds one frame's payload. Zero means 4 MiB.
	MaxPayload int
	// Lease is how long a space with no user and unread data survives.
	// Zero means one hour.
	Lease time.Duration
	// Tick is the lease clock's resolution. Zero means one second.
	Tick time.Duration
	// Logger receives connection-level events. Nil means no logging.
	Logger *slog.Logger
	// Local says whether the server also listens on a same-host Unix
	// socket, which it tells clients about in its answer to their hello
	// (see package comm/internal/local): "" means yes where the host can
	// be identified, "off" no.
	Local string
	// SharedRing is the size of the shared-memory ring a session on a
	// Unix socket offers its client once it has sent shm.After bytes of
	// large read replies (see package comm/internal/shm): the bytes then
	// go through the ring instead of the socket. Zero means 8 MiB (see
	// comm.Config.SharedRing); negative turns rings off. The server's
	// rings share the process's budget (shm.Budget): sessions beyond it
	// use their socket.
	SharedRing int
	// Prefill is how many fresh segment buffers the cache keeps faulted
	// in ahead of the appends that will need them (cache.Config.Prefill):
	// with 4, OSU bandwidth between two ranks that may restart (the
	// server keeps every byte) rose from 1.39-1.60 to 1.66-2.12 GB/s at
	// 1 MiB and from 1.36-1.66 to 1.83-2.51 at 4 MiB, 4 interleaved
	// rounds; 16 did no better. Zero means 4; negative means none.
	Prefill int
	// Lend bounds the bytes of cache segments a session on a Unix socket
	// may have lent to its client at once: the cache's segment buffers
	// live in a shared-memory arena (shm.Arena), offered with the ring
	// to a client running as the same user, and a read reply then
	// references the segment's bytes instead of copying them into the
	// ring; past the bound, and for bytes outside the arena, the ring
	// takes a copy as before. Zero means 16 MiB; negative means no arena.
	Lend int
}

func (c Config) withDefaults() Config {
	if c.MaxPayload <= 0 {
		c.MaxPayload = 4 << 20
	}
	if c.Lease <= 0 {
		c.Lease = time.Hour
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.SharedRing == 0 {
		c.SharedRing = 8 << 20
	}
	if c.Prefill == 0 {
		c.Prefill = 4
	}
	if c.Lend == 0 {
		c.Lend = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Server serves the lookup and cache services. Create it with [New], give
// it listeners with [Server.Serve], stop it with [Server.Close].
type Server struct {
	cfg   Config
	store *cache.Store
	arena *shm.Arena // the store's segment buffers, nil without one
	drv   *driver
	local string // the same-host endpoint, "" without one

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closed    bool

	waitMu  sync.Mutex
	waiting map[cache.Key]int // read streams parked at an instance's end

	nextID atomic.Uint64
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once
}

// New starts a server's driver and cache store. It serves nothing until
// [Server.Serve] is called.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	ccfg, err := cache.Config{Dir: cfg.Dir, MemoryBytes: cfg.MemoryBytes,
		SegmentSize: cfg.SegmentSize, Prefill: cfg.Prefill}.Validate()
	if err != nil {
		return nil, fmt.Errorf("server: opening cache: %w", err)
	}
	arena := newArena(cfg, ccfg)
	if arena != nil {
		ccfg.Memory = arena
	}
	store, err := cache.Open(ccfg)
	if err != nil {
		if arena != nil {
			arena.Close()
		}
		return nil, fmt.Errorf("server: opening cache: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		store:     store,
		arena:     arena,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		waiting:   map[cache.Key]int{},
		done:      make(chan struct{}),
	}
	s.drv = newDriver(s)
	s.goFunc(s.drv.run)
	if cfg.Local != "off" {
		if l, ep, err := local.Listen("server"); err == nil { // best effort: TCP serves everyone
			s.local = ep
			s.goFunc(func() { s.Serve(l) })
		}
	}
	return s, nil
}

// goFunc runs f on a goroutine the server waits for in Close.
func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Serve accepts connections on l until the server is closed, and then
// returns [ErrServerClosed]. Temporary accept errors back off from 5 ms to 1 s.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("server: accept: %w", err)
			}
			// Resource exhaustion (EMFILE and the like): back off and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		if !s.startSession(c) {
			c.Close()
			return ErrServerClosed
		}
	}
}

func (s *Server) startSession(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	ss := newSession(s, c, s.nextID.Add(1))
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ss.serve()
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	return true
}

// Addrs returns the addresses of the listeners being served.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// CacheStats returns a snapshot of the server's cache counters.
func (s *Server) CacheStats() cache.Stats { return s.store.Stats() }

// Close stops the server now: it closes the listeners (no new sessions),
// then every session, then the driver, then the cache store, and waits for
// all of its goroutines. Cached data in memory is lost; data spilled to
// Config.Dir stays on disk. Close is idempotent.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done) // before the listeners, so Serve knows why Accept fails
		for l := range s.listeners {
			l.Close()
		}
		for ss := range s.sessions {
			ss.conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		err = s.store.Close()
		if s.arena != nil {
			err = errors.Join(err, s.arena.Close())
		}
	})
	return err
}

// The arena is a cache.Filler (where this process's first touches are
// slow, the store writes segments with pwrite) and a cache.Reserver
// (fresh slots for writers are reserved, not faulted in).
var (
	_ cache.Filler   = (*shm.Arena)(nil)
	_ cache.Reserver = (*shm.Arena)(nil)
)

// newArena makes the arena the store's segment buffers come from (see
// Config.Lend), or returns nil: rings or the arena are off, or making it
// failed (the store then uses the heap, and replies are copied). It has
// a slot per segment the memory bound holds, and 64 more for segments
// pinned past their eviction; a store that needs more takes them from
// the heap.
func newArena(cfg Config, ccfg cache.Config) *shm.Arena {
	if cfg.Lend < 0 || cfg.SharedRing <= 0 || cfg.Local == "off" {
		return nil
	}
	a, err := shm.NewArena(ccfg.SegmentSize, int(ccfg.MemoryBytes/int64(ccfg.SegmentSize))+64)
	if err != nil {
		cfg.Logger.Info("no shared arena", "err", err)
		return nil
	}
	return a
}

// Shutdown stops accepting, waits until every session has ended by itself
// or ctx is done, and then closes the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			return s.Close()
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// park counts a read stream (n = 1) about to wait at the end of k, or one
// done waiting (n = -1). Appends to an instance nobody waits on are not
// reported to the lookup service (see session.onWrite).
func (s *Server) park(k cache.Key, n int) {
	s.waitMu.Lock()
	s.waiting[k] += n
	if s.waiting[k] <= 0 {
		delete(s.waiting, k)
	}
	s.waitMu.Unlock()
}

func (s *Server) hasWaiters(k cache.Key) bool {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return s.waiting[k] > 0
}
