// Package cache is the storage of the π-Spaces cache service: it keeps the
// payload of channel instances and answers reads at any offset, for any
// number of readers, while the writer is still writing and long after it
// has gone. It does no networking; the cache server calls it.
//
// # Streams and segments
//
// Each channel instance, named by a [Key] (space, instance), is a stream of
// bytes cut into segments of Config.SegmentSize bytes (1 MiB by default).
// The last segment of an unsealed stream is its open tail; every other
// segment is immutable, and so is the last one once the stream is sealed.
// A segment is the unit of sealing, of checksumming (CRC-32C, see
// [Checksum], computed when the segment first needs it: spilled, or asked
// for) and of spilling, and it is meant to be the unit of erasure
// coding: Config.OnSeal is called once per segment as it becomes immutable,
// with its bytes and CRC, which is where a coder hooks in to split the
// segment into k+m shards; [Store.Segment] reads a whole immutable segment
// back for repair.
//
// # Writing
//
// [Store.Append] is idempotent by offset: a writer restarted from a
// checkpoint may re-send bytes the cache already holds; identical bytes are
// dropped, differing ones are [ErrDiverged], a write past the end is
// [ErrGap]. [Store.Seal] ends the stream at an agreed length. The caller
// is expected to run one writer per key at a time (concurrent writers on a
// key are safe, only their segments interleave); different keys are
// written in parallel.
//
// # Reading
//
// [Store.ReadAt] copies whatever is available straight from the segment
// buffers, without allocating, and never waits; [Store.Wait] blocks until
// a stream grows past an offset or is sealed, so a reader follows a writer
// with a Wait/ReadAt loop. Readers take the stream lock only to snapshot
// its length and segment list, and an appender only to publish what it has
// copied, so reads of immutable segments are never held up by the tail.
//
// # Memory and spilling
//
// Config.MemoryBytes bounds the bytes of segment buffers in memory (open
// tails count their allocated capacity: a stream's first segment grows by
// doubling from 4 KiB up to SegmentSize, later ones get SegmentSize at
// once). With Config.Dir set, once the bound is passed the
// least recently used immutable segments are written, one file per
// segment, to a private directory the store creates in Dir, and dropped
// from memory, down to 7/8 of the bound; the goroutine that passed the
// bound does the writing, so writers slow to the pace of the disk. Open
// tails are never spilled, so memory exceeds the bound only when open tails
// alone do. A spilled segment read again is read back whole, its header
// and CRC-32C checked ([ErrCorrupt] rather than wrong bytes), and kept in
// memory as a recently used segment. Without Dir nothing is spilled and
// MemoryBytes is a hard cap: Append fails with [ErrFull].
//
// Segment buffers are recycled: when a segment leaves memory (its stream
// is deleted or it is spilled) its buffer goes to a free list, bounded by
// Config.RecycleBytes and counted in [Stats].FreeBytes rather than
// MemoryBytes, and the next segment (or read-back) reuses it rather than
// fresh memory. A buffer is reused only once no reader can still see it:
// ReadAt pins what it copies from, [Store.Segment] and [Store.View] hand
// out bytes valid until their release function is called, and OnSeal's
// bytes are valid during the call. With Config.Prefill a goroutine of the
// store keeps that many fresh buffers, already faulted in, on the free
// list, so that a store that keeps everything does not fault in each new
// segment on its appender's path. A Config.Memory that is a [Filler] and
// Fills writes the store's buffers itself (shm.Arena, with pwrite, where
// this process's first touch of a page is slow), and fresh buffers then
// have their memory reserved ([Reserver]) instead of faulted in.
//
// [Store.Trim] discards a stream's whole immutable segments within a
// range of offsets, for a caller that knows nobody will read them again (a channel
// whose only consumer has consumed them and will never be replayed): their
// buffers go to the free list and their spill files away, so a long-lived
// stream costs what is in flight rather than everything it carried, and
// its next segments are written into warm memory. The stream keeps its
// length; reading trimmed bytes fails with [ErrTrimmed], and a replayed
// Append over them is accepted unchecked.
//
// Spill files are written with O_DIRECT where the file system allows it
// (Linux only): no copy into the page cache and no page-cache memory, so
// spilling costs the server little CPU; the store falls back to buffered
// writes, for good, once O_DIRECT fails with EINVAL, and per file when
// the segment's buffer is not 4 KiB-aligned or too short to be written
// padded to 4 KiB (a SegmentSize not a multiple of 4 KiB). The file of a
// deleted segment is renamed and kept, up to 512 MiB of them, for a later
// spill to overwrite in place: creating files is costly on some file
// systems.
//
// Spill files are a cache of memory, not a durable store: Open never reads
// old ones, and [Store.Close] removes the private directory with every file
// in it; it never touches Dir itself or anything else in it. A process that
// crashes leaves its directory ("cache-*" in Dir) behind for the operator.
//
// # Errors and lifetime
//
// Errors wrap the sentinels of this package (test with errors.Is) with
// the operation and key. After [Store.Close] every method returns
// [ErrClosed] and every Wait in progress returns it; Close waits for the
// calls in progress and is idempotent. The locks and their order are
// listed in LOCKS.md.
package cache
