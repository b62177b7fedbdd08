package rt

import (
	"context"

	"github.com/pispace/pispace/rt/internal/memspace"
)

// Space is the job's π-space as rt sees it. Implementations are safe for concurrent use.
type Space interface {
	// Create opens a writer on the channel name. key identifies the writer across restarts: creating with the same key again resumes the same instance (bytes written at offsets below the stored length are compared and dropped, never duplicated). Writing starts at offset. Never blocks waiting for a reader.
	Create(ctx context.Context, name, key string, offset int64) (ChanWriter, error)
	// Attach opens a reader on the (oldest) instance of name, waiting until it exists, reading from offset. Reading never deletes; several readers may read one instance.
	Attach(ctx context.Context, name string, offset int64) (ChanReader, error)
	// Stat reports the newest instance of name: its length, whether its writer closed it, and whether it exists at all (found=false, err=nil when not).
	Stat(ctx context.Context, name string) (length int64, sealed bool, found bool, err error)
}

// ChanWriter writes one channel instance.
type ChanWriter interface {
	// Write never waits for a reader; the buffer is reusable after return.
	Write(p []byte) (int, error)
	// Close seals the instance and returns when its data is durable.
	Close(ctx context.Context) error
}

// ChanReader reads one channel instance.
type ChanReader interface {
	// ReadContext blocks until at least one byte is available and returns io.EOF after the writer's Close.
	ReadContext(ctx context.Context, p []byte) (int, error)
	// Close releases the reader.
	Close() error
}

// NewMemSpace returns an in-process Space with the persistent-channel
// semantics of a job's space: writers never block, data outlives its writer,
// late readers read from the start, and re-creating with a key resumes the
// instance idempotently by offset. [Init] uses one for a world run without
// pirun; tests use it (through rttest) to run many ranks in one process.
// The space keeps every byte written for as long as it is referenced.
func NewMemSpace() Space { return memSpace{memspace.New()} }

type memSpace struct{ s *memspace.Space }

func (m memSpace) Create(ctx context.Context, name, key string, offset int64) (ChanWriter, error) {
	w, err := m.s.Create(ctx, name, key, offset)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (m memSpace) Attach(ctx context.Context, name string, offset int64) (ChanReader, error) {
	r, err := m.s.Attach(ctx, name, offset)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (m memSpace) Stat(ctx context.Context, name string) (int64, bool, bool, error) {
	return m.s.Stat(ctx, name)
}
