package rt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Wildcards for receives.
const (
	// AnySource matches a message from any rank.
	AnySource = -1
	// AnyTag matches any user tag (never the runtime's internal traffic).
	AnyTag = -1
)

// collTag is the tag of all collective traffic; user tags are >= 0.
const collTag = -2

// opCode names what a frame belongs to: point-to-point or a collective.
type opCode uint8

const (
	opP2P opCode = iota
	opBarrier
	opBcast
	opReduce
	opAllreduce
	opGather
	opScatter
	opAllgather
	opAlltoall
	opScan
	opSplit
	opLimit
)

var opNames = [...]string{"p2p", "barrier", "bcast", "reduce", "allreduce",
	"gather", "scatter", "allgather", "alltoall", "scan", "split"}

func (o opCode) String() string {
	if o < opLimit {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// worldID is the world communicator's id (split children's ids extend
// their parent's).
const worldID = "w"

// world is what the communicators of one rank process share.
type world struct {
	space Space
	cfg   Config

	mu      sync.Mutex
	comms   map[string]*Comm      // open communicators by id
	pending map[string]*commState // restored state of communicators not yet created
	named   map[string]int        // Create calls per user channel name

	ckptMu sync.Mutex
	ckpt   ckptLog
	trims  map[string]*trimMark // by channel read, see trimCheckpointed
}

// Comm is a communicator: a group of ranks that exchange messages and run
// collectives over per-pair channels in the job's space. The world
// communicator comes from [Init] or [New]; [Comm.Split] derives others.
//
// Point-to-point operations may be called from several goroutines at once.
// Collectives on one communicator must be called by every member in the
// same order, one at a time.
type Comm struct {
	w    *world
	id   string
	rank int
	size int

	outs []outChan
	in   inbox

	life context.Context // parent of the pumps' contexts; cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	closed   atomic.Bool
	closeMu  sync.Mutex
	shutDone bool
	shutErr  error

	splitMu sync.Mutex
	splits  int // Split calls so far, part of the checkpointed state
}

// New returns the world communicator of rank cfg.Rank over space. It
// validates cfg (see [Config.Validate]) and announces the rank in the space
// (for [Comm.WaitForMin]). rttest and transport adapters use it; programs
// started by pirun call [Init].
func New(ctx context.Context, space Space, cfg Config) (*Comm, error) {
	if space == nil {
		return nil, fmt.Errorf("%w: nil space", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &world{space: space, cfg: cfg, comms: map[string]*Comm{},
		pending: map[string]*commState{}, named: map[string]int{}}
	if err := w.announce(ctx); err != nil {
		return nil, err
	}
	return w.newComm(worldID, cfg.Rank, cfg.Size), nil
}

// announce creates this rank's "_rt/up/<rank>" channel.
func (w *world) announce(ctx context.Context) error {
	name := upName(w.cfg.Rank)
	cw, err := w.space.Create(ctx, name, name, 0)
	if err != nil {
		return rankErr(w.cfg.Rank, "init", err)
	}
	if err := cw.Close(ctx); err != nil {
		return rankErr(w.cfg.Rank, "init", err)
	}
	return nil
}

func upName(rank int) string { return "_rt/up/" + strconv.Itoa(rank) }

// newComm builds and registers a communicator, applying restored state
// recorded for its id.
func (w *world) newComm(id string, rank, size int) *Comm {
	c := &Comm{w: w, id: id, rank: rank, size: size, outs: make([]outChan, size)}
	c.life, c.stop = context.WithCancel(context.Background())
	c.in.init(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.comms[id] = c
	if st := w.pending[id]; st != nil && len(st.peers) == size {
		delete(w.pending, id)
		c.applyState(st)
	}
	return c
}

// Rank returns this process's rank in c.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of ranks in c.
func (c *Comm) Size() int { return c.size }

// Incarnation returns how many times this rank has been restarted.
func (c *Comm) Incarnation() int { return c.w.cfg.Incarnation }

// Config returns the validated configuration of this rank's world.
func (c *Comm) Config() Config { return c.w.cfg }

// pairName is the channel carrying messages from src to dst in c.
func (c *Comm) pairName(src, dst int) string {
	return "_rt/" + c.id + "/p2p/" + strconv.Itoa(src) + "-" + strconv.Itoa(dst)
}

// Close closes c like [Comm.Shutdown] with a context bounded by
// Config.CloseTimeout.
func (c *Comm) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.w.cfg.CloseTimeout)
	defer cancel()
	return c.Shutdown(ctx)
}

// Shutdown closes c: pending receives fail with ErrClosed, its goroutines
// are stopped and joined, and the channels it wrote are sealed and made
// durable, so peers (late or restarted) can still read every message sent
// before. Closing the world also closes every communicator split from it
// and runs Config.OnClose. Later operations on c return ErrClosed; Shutdown
// and Close are idempotent and return the first result.
func (c *Comm) Shutdown(ctx context.Context) error {
	world := c.id == worldID
	if world {
		for _, sub := range c.w.openComms() {
			if sub != c {
				_ = sub.Shutdown(ctx)
			}
		}
	}
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.shutDone {
		return c.shutErr
	}
	c.shutDone = true
	c.closed.Store(true)
	c.stop()
	c.in.failAll(ErrClosed)
	c.wg.Wait()
	c.in.shutdown()
	err := c.closeWriters(ctx)
	c.w.mu.Lock()
	delete(c.w.comms, c.id)
	c.w.mu.Unlock()
	if world {
		err = errors.Join(err, c.w.closeCkpt(ctx))
		if c.w.cfg.OnClose != nil {
			err = errors.Join(err, c.w.cfg.OnClose())
		}
	}
	c.shutErr = err
	return err
}

// openComms returns the world's open communicators.
func (w *world) openComms() []*Comm {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Collect(maps.Values(w.comms))
}

// check validates a call's context and c's state.
func (c *Comm) check(ctx context.Context, op string) error {
	if c.closed.Load() {
		return rankErr(c.rank, op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return rankErr(c.rank, op, err)
	}
	return nil
}

// checkPeer validates a definite peer rank.
func (c *Comm) checkPeer(peer int, op string) error {
	if peer < 0 || peer >= c.size {
		return rankErr(peer, op, fmt.Errorf("%w: %d not in [0,%d)", ErrRank, peer, c.size))
	}
	return nil
}
