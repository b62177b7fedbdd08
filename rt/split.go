package rt

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Split partitions c: ranks that pass the same color form a new
// communicator, ordered by key and then by rank in c. Every rank of c must
// call Split (it is a collective). A negative color means "not a member":
// that rank gets a nil *Comm and a nil error. The new communicator has its
// own channels ("_rt/<parent-id>.<split#>.<color>/p2p/..."), all the
// operations of c, and must be closed (closing the world closes it too).
func (c *Comm) Split(ctx context.Context, color, key int) (*Comm, error) {
	mine := []int64{int64(color), int64(key)}
	all := make([]int64, 2*c.size)
	if err := allgather(ctx, c, opSplit, mine, all); err != nil {
		return nil, err
	}
	c.splitMu.Lock()
	nth := c.splits
	c.splits++
	c.splitMu.Unlock()
	if color < 0 {
		return nil, nil
	}
	var members []int
	for r := range c.size {
		if all[2*r] == int64(color) {
			members = append(members, r)
		}
	}
	slices.SortStableFunc(members, func(a, b int) int {
		return cmp.Compare(all[2*a+1], all[2*b+1])
	})
	id := c.id + "." + strconv.Itoa(nth) + "." + strconv.Itoa(color)
	return c.w.newComm(id, slices.Index(members, c.rank), len(members)), nil
}

// Create opens a writer on a channel of the job's space named by the
// program (any name not starting with "_rt/"). Writes never wait for a
// reader; Close the writer to make its data durable and end the stream.
// Each rank's n-th Create of a name has a stable key, so a restarted rank
// that creates it again resumes the same channel and its replayed bytes
// are not duplicated.
func (c *Comm) Create(ctx context.Context, name string) (ChanWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := c.check(ctx, "create"); err != nil {
		return nil, err
	}
	c.w.mu.Lock()
	nth := c.w.named[name]
	c.w.named[name]++
	c.w.mu.Unlock()
	key := "user/" + strconv.Itoa(c.w.cfg.Rank) + "/" + strconv.Itoa(nth) + "/" + name
	return c.w.space.Create(ctx, name, key, 0)
}

// Attach opens a reader on the oldest instance of a named channel, from
// its start, waiting until someone creates it or ctx ends. Reading never
// deletes: every reader sees every byte.
func (c *Comm) Attach(ctx context.Context, name string) (ChanReader, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := c.check(ctx, "attach"); err != nil {
		return nil, err
	}
	return c.w.space.Attach(ctx, name, 0)
}

// Stat reports the newest instance of a named channel (see [Space]).
func (c *Comm) Stat(ctx context.Context, name string) (length int64, sealed, found bool, err error) {
	if err := checkName(name); err != nil {
		return 0, false, false, err
	}
	return c.w.space.Stat(ctx, name)
}

func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "_rt/") {
		return fmt.Errorf("%w: %q", ErrName, name)
	}
	return nil
}
