// Package rttest runs the ranks of an rt program as goroutines of one test
// process over a shared in-memory space, with late starts and crashes.
//
// A crash abandons the rank the way a killed process would: its channels
// are neither closed nor sealed (a write in flight may be torn), and the
// rank is started again with the next incarnation on the same space, where
// it can Restore its last checkpoint.
package rttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pispace/pispace/rt"
)

// ErrCrashed is returned by every space operation of a crashed rank; a rank
// function may also return it (wrapped or not) to crash on purpose.
var ErrCrashed = errors.New("rttest: rank crashed")

// Func is one incarnation of a rank's program. It must return when ctx
// ends or when the communicator's operations fail.
type Func func(ctx context.Context, c *rt.Comm) error

// Options adjusts Run. The zero value runs every rank at once on a new
// space with default configs and no faults.
type Options struct {
	// Space is shared by all ranks; nil means a new rt.NewMemSpace().
	Space rt.Space
	// Delay postpones the start of the listed ranks (simulating late
	// placement).
	Delay map[int]time.Duration
	// Config adjusts each rank's Config (Rank, Size and Incarnation are
	// already set) before rt.New.
	Config func(*rt.Config)
	// CrashAfterWrites crashes rank r in its first incarnation on its n-th
	// channel write: that write stores only the first half of its bytes.
	CrashAfterWrites map[int]int
	// MaxRestarts bounds how often one rank is restarted after crashes;
	// zero means 3.
	MaxRestarts int
}

// Run starts n ranks running fn and waits for all of them, restarting
// crashed ones. It returns the ranks' errors joined, each prefixed with
// its rank. Every rank's communicator is closed when its fn returns; the
// first rank to fail cancels the others' context, so a test fails fast
// instead of waiting for its deadline.
func Run(ctx context.Context, n int, fn Func, opts Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Space == nil {
		opts.Space = rt.NewMemSpace()
	}
	if opts.MaxRestarts == 0 {
		opts.MaxRestarts = 3
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runRank(ctx, r, n, fn, &opts); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func runRank(ctx context.Context, rank, n int, fn Func, opts *Options) error {
	if d := opts.Delay[rank]; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for inc := 0; ; inc++ {
		crashAt := 0
		if inc == 0 {
			crashAt = opts.CrashAfterWrites[rank]
		}
		crashed, err := runIncarnation(ctx, rank, n, inc, crashAt, fn, opts)
		if !crashed {
			return err
		}
		if inc >= opts.MaxRestarts {
			return fmt.Errorf("crashed %d times, last: %w", inc+1, err)
		}
	}
}

// runIncarnation runs fn once; crashed reports a crash to restart from.
func runIncarnation(ctx context.Context, rank, n, inc, crashAt int, fn Func, opts *Options) (crashed bool, err error) {
	fs := newFaultSpace(opts.Space, crashAt)
	defer fs.kill() // nothing of this incarnation outlives it
	cfg := rt.Config{Rank: rank, Size: n, Incarnation: inc}
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	c, err := rt.New(ctx, fs, cfg)
	if err != nil {
		return false, err
	}
	err = fn(ctx, c)
	if fs.dead() || errors.Is(err, ErrCrashed) {
		fs.kill()
		_ = c.Close() // joins the rank's goroutines; the dead space seals nothing
		return true, err
	}
	return false, errors.Join(err, c.Close())
}

// faultSpace is one incarnation's view of the shared space; kill cuts it
// off like a process death.
type faultSpace struct {
	inner   rt.Space
	mu      sync.Mutex
	writes  int
	crashAt int
	deadCtx context.Context // done once killed
	kill    context.CancelFunc
}

func newFaultSpace(inner rt.Space, crashAt int) *faultSpace {
	fs := &faultSpace{inner: inner, crashAt: crashAt}
	fs.deadCtx, fs.kill = context.WithCancel(context.Background())
	return fs
}

func (fs *faultSpace) dead() bool { return fs.deadCtx.Err() != nil }

// guard returns a context that also ends when fs is killed.
func (fs *faultSpace) guard(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(fs.deadCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (fs *faultSpace) Create(ctx context.Context, name, key string, offset int64) (rt.ChanWriter, error) {
	if fs.dead() {
		return nil, ErrCrashed
	}
	w, err := fs.inner.Create(ctx, name, key, offset)
	if err != nil {
		return nil, err
	}
	return &faultWriter{fs: fs, w: w}, nil
}

func (fs *faultSpace) Attach(ctx context.Context, name string, offset int64) (rt.ChanReader, error) {
	gctx, done := fs.guard(ctx)
	defer done()
	r, err := fs.inner.Attach(gctx, name, offset)
	if fs.dead() {
		if r != nil {
			_ = r.Close()
		}
		return nil, ErrCrashed
	}
	if err != nil {
		return nil, err
	}
	return &faultReader{fs: fs, r: r}, nil
}

func (fs *faultSpace) Stat(ctx context.Context, name string) (int64, bool, bool, error) {
	if fs.dead() {
		return 0, false, false, ErrCrashed
	}
	return fs.inner.Stat(ctx, name)
}

type faultWriter struct {
	fs *faultSpace
	w  rt.ChanWriter
}

func (w *faultWriter) Write(p []byte) (int, error) {
	fs := w.fs
	fs.mu.Lock()
	if fs.dead() {
		fs.mu.Unlock()
		return 0, ErrCrashed
	}
	fs.writes++
	torn := fs.crashAt > 0 && fs.writes == fs.crashAt
	if torn {
		_, _ = w.w.Write(p[:len(p)/2])
		fs.kill()
	}
	fs.mu.Unlock()
	if torn {
		return 0, ErrCrashed
	}
	return w.w.Write(p)
}

func (w *faultWriter) Close(ctx context.Context) error {
	if w.fs.dead() {
		return ErrCrashed
	}
	return w.w.Close(ctx)
}

type faultReader struct {
	fs *faultSpace
	r  rt.ChanReader
}

func (r *faultReader) ReadContext(ctx context.Context, p []byte) (int, error) {
	gctx, done := r.fs.guard(ctx)
	defer done()
	n, err := r.r.ReadContext(gctx, p)
	if err != nil && r.fs.dead() && ctx.Err() == nil {
		return n, ErrCrashed
	}
	return n, err
}

func (r *faultReader) Close() error { return r.r.Close() }
