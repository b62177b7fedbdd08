package cache

import (
	"fmt"
	"hash/crc32"
)

// Defaults and limits of [Config].
const (
	DefaultMemoryBytes = 256 << 20 // Config.MemoryBytes when zero
	DefaultSegmentSize = 1 << 20   // Config.SegmentSize when zero
	MaxRecycleBytes    = 256 << 20 // largest default of Config.RecycleBytes
	MinSegmentSize     = 4 << 10   // smallest Config.SegmentSize accepted
	MaxSegmentSize     = 1 << 30   // largest Config.SegmentSize accepted
)

// Key names one channel instance: the space it lives in and its instance
// number, unique within the space.
type Key struct {
	Space    string
	Instance uint64
}

// String returns the key as "space"#instance, for errors and logs.
func (k Key) String() string { return fmt.Sprintf("%q#%d", k.Space, k.Instance) }

// Config configures a [Store]. The zero value is valid: a memory-only store
// of 256 MiB with 1 MiB segments.
type Config struct {
	// Dir is the spill directory. The store spills into a private
	// subdirectory it creates there and removes on Close. "" means never
	// spill: memory only, and MemoryBytes is then a hard cap (ErrFull).
	Dir string
	// MemoryBytes bounds the bytes of segment buffers held in memory,
	// those in use (Stats.MemoryBytes) plus the free ones kept for reuse
	// (Stats.FreeBytes, see RecycleBytes). Zero means DefaultMemoryBytes;
	// negative is rejected.
	MemoryBytes int64
	// SegmentSize is the size of a full segment, the unit of sealing,
	// checksumming, spilling and (later) erasure coding. Zero means
	// DefaultSegmentSize; otherwise it must lie in
	// [MinSegmentSize, MaxSegmentSize].
	SegmentSize int
	// DirectIO writes spill files with O_DIRECT (where the file system
	// takes it): no page-cache copy and no page-cache memory, but every
	// spilling Append waits for the device. Measured on the development
	// VM, a store that keeps what it spills wrote 410-500 MB/s with it
	// against 650-830 buffered, for about the same CPU, so it is off by
	// default.
	DirectIO bool
	// RecycleBytes bounds the free segment buffers the store keeps for
	// reuse. When a segment's bytes leave memory (its stream is deleted,
	// or it is spilled) and no reader still holds them, its SegmentSize
	// buffer goes to a free list, and the next segment takes it instead of
	// fresh memory, which costs page faults and zeroing (copying into a
	// fresh buffer is an order of magnitude slower than into a reused
	// one). Free buffers are not counted in Stats.MemoryBytes but in
	// Stats.FreeBytes, and they are kept only while MemoryBytes plus
	// FreeBytes stays within Config.MemoryBytes, so the store's memory
	// still stays within the bound. Zero means min(MemoryBytes/4,
	// MaxRecycleBytes): enough to hand a deleted stream's buffers to the
	// next one, while at most a quarter of the budget sits idle. Negative
	// means no recycling.
	RecycleBytes int64
	// Prefill is how many fresh segment buffers the store keeps ready on
	// its free list, faulted in by a goroutine of its own while appends
	// go on: an append that needs a new segment buffer then takes a ready
	// one instead of faulting one in itself. A store that keeps every
	// byte (a job whose ranks may restart) takes new memory for every
	// segment, and faulting it in (~300 µs per MiB on the development VM)
	// held up the writer behind the append. Prefilled buffers count as
	// free ones (Stats.FreeBytes, within RecycleBytes and MemoryBytes).
	// Zero or negative means none.
	Prefill int
	// OnSeal, if set, is called once per segment when it becomes
	// immutable: when it fills up, or when Seal closes a stream whose last
	// segment is partial. It runs synchronously in the goroutine of the
	// Append or Seal that sealed the segment, with no store lock held, so
	// it may call the Store (but an Append or Seal on the same key from
	// inside OnSeal races with the caller's own writes). data holds the
	// segment's bytes and must not be modified; it is valid only until
	// OnSeal returns (the buffer may then be recycled): copy what must be
	// kept. crc is its CRC-32C ([Checksum]). Segments are
	// reported in index order for each key written by one writer at a
	// time. A stream sealed at a multiple
	// of SegmentSize (or empty) has no partial segment and no extra call.
	OnSeal func(k Key, index int, data []byte, crc uint32)
	// Memory, if set, provides whole segment buffers (SegmentSize bytes)
	// in place of the heap: a comm server takes them from a shared-memory
	// arena that readers of its host map, so that it can send them
	// references to a segment's bytes instead of copies. The store falls
	// back to the heap when Alloc has nothing, and hands every buffer it
	// lets go of to Free, which reports whether the buffer was its own.
	Memory Allocator
}

// Allocator provides segment buffers ([Config.Memory]). Both methods may
// be called from many goroutines at once.
type Allocator interface {
	// Alloc returns a buffer of size bytes (len == cap, old contents),
	// or nil when it has none.
	Alloc(size int) []byte
	// Free takes back a buffer once nothing reads or writes it any
	// more, and reports whether it came from Alloc; the store leaves any
	// other buffer to the garbage collector.
	Free(b []byte) bool
}

// A Reserver is an [Allocator] that can take the memory of a fresh buffer
// without zeroing it, for a buffer its user fills by other means than
// stores through b (shm.Arena: fallocate, then pwrite): see
// Store.TakeBuffer.
type Reserver interface {
	Allocator
	// Reserve takes the memory of b, a buffer Alloc returned and nothing
	// wrote; an error leaves b as it was.
	Reserve(b []byte) error
}

// A Filler is an [Allocator] whose buffers this process fills better with
// system calls than with stores through b: shm.Arena where a process's
// first touch of a page is slow (a hypervisor that shadows the guest's
// page tables traps on each), which writes with pwrite. The store asks
// Fills once, and then neither faults fresh buffers in ahead nor copies
// into them itself.
type Filler interface {
	Allocator
	// Fills reports whether Fill is the way to write this process's
	// buffers.
	Fills() bool
	// Fill writes p at dst, which lies in a buffer Alloc returned; an
	// error (dst is no such buffer's) leaves the copy to the caller.
	Fill(dst, p []byte) error
}

// Validate returns c with zero values replaced by their defaults, or an
// error wrapping ErrConfig if a field is out of range.
func (c Config) Validate() (Config, error) {
	if c.MemoryBytes < 0 {
		return c, fmt.Errorf("%w: MemoryBytes %d < 0", ErrConfig, c.MemoryBytes)
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.RecycleBytes == 0 {
		c.RecycleBytes = min(c.MemoryBytes/4, MaxRecycleBytes)
	}
	if c.SegmentSize < MinSegmentSize || c.SegmentSize > MaxSegmentSize {
		return c, fmt.Errorf("%w: SegmentSize %d outside [%d, %d]",
			ErrConfig, c.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	return c, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C (Castagnoli) of p: the checksum of a sealed
// segment that the store writes into its spill file, checks when reading
// it back, and passes to Config.OnSeal and from Segment.
func Checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }
