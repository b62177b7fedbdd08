package rt

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config describes one rank of a world and tunes the runtime. Zero values
// of the tuning fields mean their documented defaults; [Config.Validate]
// fills them in.
type Config struct {
	// Rank is this process's rank in the world, 0 <= Rank < Size.
	Rank int
	// Size is the number of ranks in the world; zero means 1.
	Size int
	// Incarnation counts restarts of this rank so far (0 the first time).
	Incarnation int
	// Min is how many ranks [Comm.WaitForMin] waits for; zero means Size.
	Min int
	// Job is the job id, for messages only.
	Job string
	// TrimConsumed says that nobody will ever replay this rank's incoming
	// channels: the rank is never restarted (Init sets it when pirun runs
	// the job with --max-restarts 0, PIRUN_MAX_RESTARTS=0). The rank then
	// lets the space discard what it has consumed of each peer's channel
	// (comm.Reader.Trim, every trimEvery bytes), so that the job's space
	// holds what is in flight rather than everything ever sent, and its
	// server reuses warm memory. Otherwise every byte stays: a restarted
	// rank replays its channels from the start or from its checkpoint.
	TrimConsumed bool

	// BcastLargeBytes: broadcasts of at least this many bytes (with at
	// least 3 ranks) use scatter + ring allgather instead of a binomial
	// tree. Zero means 256 KiB.
	BcastLargeBytes int
	// ReduceLargeBytes: Reduce and Allreduce of at least this many bytes
	// with a splittable op use reduce-scatter (recursive halving) followed
	// by a gather or allgather (recursive doubling). Zero means 64 KiB.
	ReduceLargeBytes int
	// GatherLargeBytes: Gather, Scatter and Allgather whose per-rank block
	// has at least this many bytes use direct (linear) or ring algorithms
	// instead of binomial trees and Bruck. Zero means 32 KiB.
	GatherLargeBytes int
	// MaxUnexpectedBytes bounds, per source, the bytes of messages read
	// ahead of matching receives; past it the source's channel is left
	// unread in the space until a receive needs it. Zero means 64 MiB.
	MaxUnexpectedBytes int64
	// MaxMessageBytes bounds one message's payload, sent or received. Zero
	// means 4 GiB.
	MaxMessageBytes int64
	// CloseTimeout bounds [Comm.Close] while it makes written data durable.
	// Zero means 30 s.
	CloseTimeout time.Duration
	// OnClose, if set, runs once when the world communicator closes, after
	// its channels are durable (for example to close the space client).
	OnClose func() error
}

// DefaultConfig returns the configuration of a world of one rank with
// every default filled in.
func DefaultConfig() Config {
	var c Config
	_ = c.Validate()
	return c
}

// Validate checks c and fills zero fields with their defaults. It returns
// an error wrapping ErrConfig.
func (c *Config) Validate() error {
	if c.Size == 0 {
		c.Size = 1
	}
	if c.Min == 0 {
		c.Min = c.Size
	}
	switch {
	case c.Size < 0:
		return fmt.Errorf("%w: size %d", ErrConfig, c.Size)
	case c.Rank < 0 || c.Rank >= c.Size:
		return fmt.Errorf("%w: rank %d outside world of %d", ErrConfig, c.Rank, c.Size)
	case c.Incarnation < 0:
		return fmt.Errorf("%w: incarnation %d", ErrConfig, c.Incarnation)
	case c.Min < 0 || c.Min > c.Size:
		return fmt.Errorf("%w: min %d with size %d", ErrConfig, c.Min, c.Size)
	}
	setDefault(&c.BcastLargeBytes, 256<<10)
	setDefault(&c.ReduceLargeBytes, 64<<10)
	setDefault(&c.GatherLargeBytes, 32<<10)
	setDefault(&c.MaxUnexpectedBytes, 64<<20)
	setDefault(&c.MaxMessageBytes, 4<<30)
	setDefault(&c.CloseTimeout, 30*time.Second)
	if c.BcastLargeBytes < 0 || c.ReduceLargeBytes < 0 || c.GatherLargeBytes < 0 ||
		c.MaxUnexpectedBytes < 0 || c.MaxMessageBytes < 0 || c.CloseTimeout < 0 {
		return fmt.Errorf("%w: negative limit", ErrConfig)
	}
	return nil
}

func setDefault[T int | int64 | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

// dialSpace connects to the job's space served by the comm nodes at addrs.
// It is nil until a transport adapter (a file of package rt that imports
// package comm) sets it in an init function; the returned func closes the
// client and runs when the world closes.
var dialSpace func(ctx context.Context, addrs []string, space string, cfg Config) (Space, func() error, error)

// Init returns the world communicator described by the environment pirun
// sets (PIRUN_JOB, PIRUN_RANK, PIRUN_SIZE, PIRUN_INCARNATION, PIRUN_MIN,
// PIRUN_MAX_RESTARTS, PIRUN_COMM, PIRUN_SPACE). Run without pirun it is a
// world of size 1 on an in-process space. Close the world when done: Close makes everything this
// rank wrote durable.
func Init(ctx context.Context) (*Comm, error) {
	cfg, addrs, space, err := envConfig(os.Getenv)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		if cfg.Size != 1 {
			return nil, fmt.Errorf("%w: PIRUN_SIZE=%d without PIRUN_COMM", ErrEnv, cfg.Size)
		}
		return New(ctx, NewMemSpace(), cfg)
	}
	if dialSpace == nil {
		return nil, ErrNoTransport
	}
	sp, closer, err := dialSpace(ctx, addrs, space, cfg)
	if err != nil {
		return nil, fmt.Errorf("rt: connect to space %q: %w", space, err)
	}
	cfg.OnClose = closer
	c, err := New(ctx, sp, cfg)
	if err != nil && closer != nil {
		_ = closer()
	}
	return c, err
}

// envConfig reads the pirun environment contract through getenv.
func envConfig(getenv func(string) string) (Config, []string, string, error) {
	var cfg Config
	ints := []struct {
		name string
		dst  *int
	}{
		{"PIRUN_RANK", &cfg.Rank}, {"PIRUN_SIZE", &cfg.Size},
		{"PIRUN_INCARNATION", &cfg.Incarnation}, {"PIRUN_MIN", &cfg.Min},
	}
	for _, v := range ints {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return cfg, nil, "", fmt.Errorf("%w: %s=%q", ErrEnv, v.name, s)
		}
		*v.dst = n
	}
	cfg.Job = getenv("PIRUN_JOB")
	cfg.TrimConsumed = getenv("PIRUN_MAX_RESTARTS") == "0"
	if err := cfg.Validate(); err != nil {
		return cfg, nil, "", fmt.Errorf("%w: %w", ErrEnv, err)
	}
	var addrs []string
	for _, a := range strings.Split(getenv("PIRUN_COMM"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return cfg, addrs, getenv("PIRUN_SPACE"), nil
}
