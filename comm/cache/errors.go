package cache

import "errors"

// Sentinel errors. Methods wrap them with the operation, the key and the
// offsets involved; test for them with [errors.Is].
var (
	// ErrConfig reports a Config that [Config.Validate] rejects.
	ErrConfig = errors.New("cache: invalid config")
	// ErrNotFound reports an unknown stream, or one deleted during the call.
	ErrNotFound = errors.New("cache: stream not found")
	// ErrGap reports an append that starts beyond the end of the stream.
	ErrGap = errors.New("cache: append beyond end of stream")
	// ErrDiverged reports replayed bytes that differ from the stored ones.
	ErrDiverged = errors.New("cache: replayed bytes differ from stored bytes")
	// ErrSealed reports an append of new bytes to a sealed stream.
	ErrSealed = errors.New("cache: stream sealed")
	// ErrLength reports a Seal whose length is not the stream's length.
	ErrLength = errors.New("cache: seal length differs from stream length")
	// ErrOffset reports a negative offset, a read beyond the end of the
	// stream, or a segment index past the last segment.
	ErrOffset = errors.New("cache: offset out of range")
	// ErrFull reports that a memory-only store reached Config.MemoryBytes.
	ErrFull = errors.New("cache: memory bound reached")
	// ErrCorrupt reports a spill file whose header or CRC-32C does not
	// match what was written: the segment's bytes are not returned.
	ErrCorrupt = errors.New("cache: spilled segment corrupt")
	// ErrSpill reports a failure to write a segment to the spill directory.
	// The data stays in memory; only the memory bound is exceeded.
	ErrSpill = errors.New("cache: spill failed")
	// ErrNotSealed reports a request for the open tail segment where only
	// an immutable segment will do.
	ErrNotSealed = errors.New("cache: segment not sealed")
	// ErrTrimmed reports a read of bytes that Trim discarded.
	ErrTrimmed = errors.New("cache: bytes trimmed")
	// ErrClosed reports a call on a closed Store.
	ErrClosed = errors.New("cache: store closed")

	// errNoDirect reports that a spill file cannot be written with
	// O_DIRECT where it is (or on this system); the store then writes it
	// buffered. Never returned by a method.
	errNoDirect = errors.New("cache: O_DIRECT not supported")
)
