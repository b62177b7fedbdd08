package rt

import (
	"context"
	"errors"

	"github.com/pispace/pispace/comm"
)

// The transport adapter: a job's space served by comm nodes, through the
// comm client. Init uses it when pirun set PIRUN_COMM.
func init() { dialSpace = dialComm }

func dialComm(ctx context.Context, addrs []string, space string, cfg Config) (Space, func() error, error) {
	// comm's reads busy-poll, yielding the core between polls: that
	// helps even with more ranks than cores (a 4-rank Barrier on 2 cores
	// ~160 -> ~145 µs, a 4-rank Allreduce of one float64 ~225 -> ~170 µs).
	c, err := comm.New(comm.Config{Servers: addrs})
	if err != nil {
		return nil, nil, err
	}
	s, err := c.OpenSpace(ctx, space)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return commSpace{s}, c.Close, nil
}

// commSpace adapts a comm.Space to the Space interface rt consumes.
type commSpace struct{ s *comm.Space }

func (c commSpace) Create(ctx context.Context, name, key string, offset int64) (ChanWriter, error) {
	opts := []comm.CreateOption{comm.WithOffset(offset)}
	if key != "" {
		opts = append(opts, comm.WithWriterKey(key))
	}
	w, err := c.s.Create(ctx, name, opts...)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Attach reads the oldest instance of name whatever its read state: rt's
// channels have one instance each, which several readers (a restarted rank,
// say) may read again from an offset.
func (c commSpace) Attach(ctx context.Context, name string, offset int64) (ChanReader, error) {
	r, err := c.s.AttachAny(ctx, name, comm.AtOffset(offset))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Trim discards the bytes of name's (only) instance in [from, to): see
// comm.Space.Trim.
func (c commSpace) Trim(ctx context.Context, name string, from, to int64) (int64, error) {
	info, err := c.s.Stat(ctx, name)
	if err != nil {
		return 0, err
	}
	return c.s.Trim(ctx, info.Instance, from, to)
}

func (c commSpace) Stat(ctx context.Context, name string) (int64, bool, bool, error) {
	info, err := c.s.Stat(ctx, name)
	if errors.Is(err, comm.ErrNotFound) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, err
	}
	return info.Length, info.Sealed, true, nil
}
