package rt

import (
	"context"
	"errors"
	"runtime"

	"github.com/pispace/pispace/comm"
)

// The transport adapter: a job's space served by comm nodes, through the
// comm client. Init uses it when pirun set PIRUN_COMM.
func init() { dialSpace = dialComm }

func dialComm(ctx context.Context, addrs []string, space string, cfg Config) (Space, func() error, error) {
	c, err := comm.New(commConfig(addrs, cfg.Size, runtime.NumCPU()))
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

// commConfig is the comm client configuration of a rank of a world of
// size ranks on a host of cpus cores. Comm's reads busy-poll the socket
// before parking (Config.SpinRead), which cuts a small message's latency
// several-fold while every spinning rank has a core; with more ranks than
// cores a spinning rank takes the core the rank it waits for needs (a
// 4-rank Barrier on 2 cores takes twice as long), so it is turned off.
func commConfig(addrs []string, size, cpus int) comm.Config {
	cfg := comm.Config{Servers: addrs}
	if size > cpus {
		cfg.SpinRead = -1
	}
	return cfg
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
