package comm

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"time"

	"github.com/pispace/pispace/comm/internal/local"
	"github.com/pispace/pispace/comm/internal/proto"
)

// Config configures a [Client].
type Config struct {
	// Servers are the comm servers' addresses (host:port). A space is
	// served by the one chosen by rendezvous hashing of the space's name,
	// so every client given the same list agrees. Required.
	Servers []string
	// DirectAddr is where this client listens for readers of its writers
	// (the direct path). Empty means "127.0.0.1:0"; "off" disables the
	// direct path, so every byte goes through the cache.
	DirectAddr string
	// Dialer opens connections, to servers and to writers. Nil means TCP,
	// or an abstract Unix socket to a server or writer in this host's
	// network namespace, which they advertise (docs/ARCHITECTURE.md,
	// Transports). Connections made through a Dialer are always TCP.
	Dialer Dialer
	// MaxPayload bounds a frame's payload. Zero means 4 MiB; it must not
	// exceed the servers' own bound.
	MaxPayload int
	// ChunkSize is the largest data frame a writer sends. Zero means 256 KiB.
	ChunkSize int
	// SinkQueue bounds, in bytes, what a writer queues for one direct
	// reader before it drops that reader to the cache path. Zero means 8 MiB.
	SinkQueue int
	// DirectWindow bounds, in bytes, what a writer may have written to a
	// direct reader's connection that the reader has not acknowledged
	// reading, for the writer to keep writing to that connection from
	// Write itself; past it, bytes for that reader go through a queue and
	// a goroutine of the writer, so that Write never waits for the reader.
	// The writer's socket send buffer is set to hold it, and the window
	// shrinks to what the kernel grants. Zero means 4 MiB.
	DirectWindow int
	// CacheQueue bounds, in bytes, what a writer queues for the cache
	// before Write waits for the cache connection. Zero means 4 MiB.
	CacheQueue int
	// SpinRead is how long a read waiting for a server or a writer
	// busy-polls the socket before parking: a round trip then costs a few
	// microseconds instead of a wake-up through the runtime's poller, at
	// the price of a core spinning meanwhile. Zero means 50µs; negative
	// turns spinning off. There is no spinning when GOMAXPROCS is 1.
	SpinRead time.Duration
	// SharedRing is the size of the shared-memory ring a writer's
	// connection to a server on the same host offers once it has carried
	// shm.After bytes of large writes for the cache (see package shm): the
	// bytes then go through the ring instead of the socket, and a write
	// that finds the ring full waits for room (see shm.Tx.Wait). The
	// server has to copy every byte into its cache, so this ring absorbs
	// bursts: with 1 MiB writes, 8 MiB rings (here and the server's) moved
	// 11-18% more in an OSU bandwidth run than 4 and 2 MiB. Zero means 8
	// MiB; negative turns rings off, also on the direct path,
	// whose rings are DirectWindow bytes (what a reader may lag by), at
	// most 4 MiB. A process's rings share a budget (shm.Budget).
	SharedRing int
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Servers) == 0 {
		return c, fmt.Errorf("comm: config: no servers")
	}
	if c.DirectAddr == "" {
		c.DirectAddr = "127.0.0.1:0"
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 4 << 20
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 256 << 10
	}
	c.ChunkSize = min(c.ChunkSize, c.MaxPayload-1024)
	if c.SinkQueue <= 0 {
		c.SinkQueue = 8 << 20
	}
	if c.DirectWindow <= 0 {
		c.DirectWindow = 4 << 20
	}
	if c.CacheQueue <= 0 {
		c.CacheQueue = 4 << 20
	}
	if c.SpinRead == 0 {
		c.SpinRead = 50 * time.Microsecond
	}
	if c.SharedRing == 0 {
		c.SharedRing = 8 << 20
	}
	return c, nil
}

// Client is a process's handle on the π-space servers. It is safe for
// concurrent use. Close it to release its connections and its direct-path
// listener.
type Client struct {
	cfg    Config
	direct *directServer // nil when the direct path is off

	blocks sync.Pool // ChunkSize-byte buffers of writers' cache queues
	small  sync.Pool // minBlock-byte buffers of writers' cache queues

	mu     sync.Mutex
	closed bool
	spaces map[*Space]struct{}
	idle   map[string][]*conn // direct-path connections to writers, ready for a Subscribe
	local  map[string]string  // server address -> its same-host endpoint, from its welcome
}

// New returns a client for the servers in cfg. It starts the direct-path
// listener but contacts no server until a space is opened.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, spaces: map[*Space]struct{}{}, idle: map[string][]*conn{}, local: map[string]string{}}
	if cfg.DirectAddr != "off" {
		l, err := net.Listen("tcp", cfg.DirectAddr)
		if err != nil {
			return nil, fmt.Errorf("comm: direct-path listener: %w", err)
		}
		ls, eps := []net.Listener{l}, l.Addr().String()
		if ll, ep, err := local.Listen("direct"); err == nil { // best effort: TCP serves everyone
			ls, eps = append(ls, ll), eps+","+ep
		}
		ring := min(cfg.DirectWindow, 4<<20)
		if cfg.SharedRing < 0 {
			ring = 0
		}
		c.direct = newDirectServer(ls, eps, cfg.MaxPayload, cfg.DirectWindow, ring)
	}
	return c, nil
}

// serverFor picks the server of a space by rendezvous hashing.
func (c *Client) serverFor(space string) string {
	best, bestScore := "", uint64(0)
	for _, s := range c.cfg.Servers {
		h := fnv.New64a()
		h.Write([]byte(s))
		h.Write([]byte{0})
		h.Write([]byte(space))
		if v := h.Sum64(); best == "" || v > bestScore {
			best, bestScore = s, v
		}
	}
	return best
}

// OpenSpace opens the named space, creating it if it does not exist. Two
// processes racing to open one name get the same space. Errors: ErrClosed,
// dial and handshake failures, ctx.Err().
func (c *Client) OpenSpace(ctx context.Context, name string) (*Space, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	addr := c.serverFor(name)
	cn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { cn.close() })
	_, err = cn.call(proto.TOpenSpace, &proto.SpaceReq{Space: name})
	stop()
	if err != nil {
		cn.close()
		return nil, ctxErr(ctx, fmt.Errorf("comm: open space %q: %w", name, err))
	}
	s := &Space{c: c, name: name, addr: addr, ctl: cn}
	c.mu.Lock()
	c.spaces[s] = struct{}{}
	c.mu.Unlock()
	return s, nil
}

// Close closes every space this client opened (without waiting for their
// writers: close writers first) and the direct-path listener. Idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	spaces := c.spaces
	c.spaces = nil
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, conns := range idle {
		for _, cn := range conns {
			cn.close()
		}
	}
	for s := range spaces {
		s.Close(context.Background())
	}
	if c.direct != nil {
		c.direct.close()
	}
	return nil
}

func (c *Client) forget(s *Space) {
	c.mu.Lock()
	delete(c.spaces, s)
	c.mu.Unlock()
}

// maxIdle bounds the idle connections kept per address: a server's, or
// a writer's direct-path listener.
const maxIdle = 8

// connect returns an idle connection to addr (see putIdle), or a new one.
// Reusing a connection spares the dial, the server's new session and the
// hello, which were most of what creating or attaching a channel cost.
// ring says the new user writes large payloads (see takeIdle).
func (c *Client) connect(ctx context.Context, addr string, ring bool) (*conn, error) {
	if cn := c.takeIdle(addr, ring); cn != nil {
		return cn, nil
	}
	return c.dial(ctx, addr)
}

// takeIdle returns an idle connection to addr that is still usable (see
// conn.reusable), or nil. Rings stay with their connection and count
// against the process's budget (shm.Budget) while it lives, idle or not;
// a ring is worth most to the side it carries for: a writer (ring) takes
// the latest connection with a ring of its own to the server, a reader
// the latest with the server's ring to it, and failing that the latest
// with neither (handed out last-in-first-out, readers and writers took
// each other's connections, every pooled connection came to hold a ring
// of each kind, and the budget ran out with a handful of channels).
func (c *Client) takeIdle(addr string, ring bool) *conn {
	for {
		c.mu.Lock()
		conns := c.idle[addr]
		if len(conns) == 0 {
			c.mu.Unlock()
			return nil
		}
		i, best := len(conns)-1, -1
		for j := len(conns) - 1; j >= 0; j-- {
			if s := conns[j].fitness(ring); s > best {
				i, best = j, s
			}
		}
		cn := conns[i]
		copy(conns[i:], conns[i+1:])
		conns[len(conns)-1] = nil
		c.idle[addr] = conns[:len(conns)-1]
		c.mu.Unlock()
		if cn.reusable() {
			return cn
		}
		cn.close()
	}
}

// putIdle keeps cn, a connection to addr with nothing in flight (its last
// user's exchanges all answered), for the next user of addr.
func (c *Client) putIdle(addr string, cn *conn) {
	c.mu.Lock()
	if c.closed || len(c.idle[addr]) >= maxIdle {
		c.mu.Unlock()
		cn.close()
		return
	}
	c.idle[addr] = append(c.idle[addr], cn)
	c.mu.Unlock()
}
