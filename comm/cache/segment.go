package cache

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// segment is one SegmentSize slice of a stream. While it is a stream's open
// tail its bytes live in stream.tail and only index and st are set. Once
// frozen it is immutable: size and the bytes never change again, and the
// bytes live in memory (mem), on disk (onDisk), or both. Its CRC-32C is
// computed when first needed (see checksum).
type segment struct {
	st    *stream
	index int

	// trimmed is set, under stream.wmu and stream.mu, when Trim takes the
	// segment (which it then drops): replays over it are not compared.
	trimmed bool

	// Set by freeze before the segment is published as immutable.
	size int
	// crc is the CRC-32C of the bytes, with crcKnown set, once checksum
	// has computed it; zero before.
	crc atomic.Uint64

	mem     atomic.Pointer[buffer] // bytes in memory (the first size of them); nil when evicted
	lastUse atomic.Int64           // LRU clock of the last access

	// mu guards the transitions between memory and disk.
	mu     sync.Mutex
	cost   int64 // bytes counted in Store.memBytes while mem != nil
	onDisk bool  // a spill file holds the bytes
	dead   bool  // the stream was deleted or the segment trimmed: no more loads or spills
	gone   error // why it is dead: ErrNotFound or ErrTrimmed
}

// freeze makes seg immutable with the bytes buf (len = size, in tb), and
// returns the bytes. With pin set the buffer is pinned for the caller (the
// seal event), which must unpin it. The caller publishes seg afterwards
// under st.mu, then calls makeResident.
func freeze(seg *segment, tb *buffer, buf []byte, pin bool) []byte {
	data := buf[:len(buf):len(buf)]
	seg.size = len(data)
	seg.cost = int64(len(tb.b))
	if pin {
		tb.state.Add(1)
	}
	seg.mem.Store(tb)
	return data
}

// crcKnown marks segment.crc as computed.
const crcKnown = 1 << 32

// checksum returns the CRC-32C of seg's bytes, the first seg.size of data
// (one of its buffers), computing it the first time. The checksum guards
// bytes that leave memory (spill files, and the shards to come), so it is
// computed when a segment is spilled, or asked for (Segment, OnSeal), and
// never for the many segments trimmed or deleted while in memory:
// computing it on every append was 6% of an OSU bandwidth run's CPU, on
// the server's append path. The bytes never change, so callers racing
// here compute the same value.
func (seg *segment) checksum(data []byte) uint32 {
	if v := seg.crc.Load(); v&crcKnown != 0 {
		return uint32(v)
	}
	c := Checksum(data[:seg.size])
	seg.crc.Store(crcKnown | uint64(c))
	return c
}

// storedCRC returns the checksum computed before the segment was spilled
// (writeSpill computes it), which its spill file carries.
func (seg *segment) storedCRC() uint32 { return uint32(seg.crc.Load()) }

// bytes returns the segment's bytes in b, one of its buffers.
func (seg *segment) bytes(b *buffer) []byte { return b.b[:seg.size:seg.size] }

// makeResident enters a frozen in-memory segment in the LRU set. The bytes
// are already counted in memBytes (as the tail's buffer).
func (s *Store) makeResident(seg *segment) {
	seg.lastUse.Store(s.clock.Add(1))
	s.lruMu.Lock()
	s.resident[seg] = struct{}{}
	s.lruMu.Unlock()
}

// data returns the bytes of the frozen segment seg, reading them back from
// its spill file if they were evicted, and the buffer holding them, pinned:
// the caller must unpin it once done with the bytes. loaded reports a
// read-back, after which the caller should call maybeSpill once it holds
// no lock.
func (s *Store) data(seg *segment) (b *buffer, data []byte, loaded bool, err error) {
	if b := s.pinMem(seg); b != nil {
		seg.lastUse.Store(s.clock.Add(1))
		return b, seg.bytes(b), false, nil
	}
	return s.load(seg)
}

// load reads seg back from its spill file, into a free buffer if there is
// one, and keeps it in memory. It returns the buffer pinned, as data does.
func (s *Store) load(seg *segment) (*buffer, []byte, bool, error) {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if b := s.pinMem(seg); b != nil { // another reader loaded it
		return b, seg.bytes(b), false, nil
	}
	if seg.dead {
		return nil, nil, false, seg.gone
	}
	if !seg.onDisk {
		return nil, nil, false, ErrNotFound
	}
	var dst []byte
	if seg.size > s.cfg.SegmentSize/2 { // a small last segment gets its own small buffer
		dst = s.takeFree()
	}
	dst, err := readSpill(s.spillPath(seg), seg, dst)
	if err != nil {
		s.putBack(dst)
		return nil, nil, false, err
	}
	b := &buffer{b: dst}
	b.state.Store(1) // pinned for the caller
	seg.cost = int64(len(dst))
	seg.mem.Store(b)
	s.memBytes.Add(seg.cost)
	s.trimFree()
	s.loads.Add(1)
	s.makeResident(seg)
	return b, seg.bytes(b), true, nil
}

// evict writes seg to its spill file unless one exists, then drops its
// bytes from memory. Readers still copying from them have them pinned:
// the buffer is recycled after the last of them. s.spillMu must be held.
func (s *Store) evict(seg *segment) error {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	b := seg.mem.Load() // seg.mu held: nobody else releases it
	if b == nil || seg.dead {
		return nil
	}
	if !seg.onDisk {
		direct, err := s.writeSpill(s.spillPath(seg), seg, b.b)
		if err != nil {
			return fmt.Errorf("%w: segment %d of %v: %w", ErrSpill, seg.index, seg.st.key, err)
		}
		if direct {
			s.directSpills.Add(1)
		}
		seg.onDisk = true
		s.diskBytes.Add(int64(seg.size))
		s.spills.Add(1)
	}
	s.forget(seg)
	return nil
}

// forget drops seg's bytes from memory and releases their buffer. seg.mu
// must be held.
func (s *Store) forget(seg *segment) {
	b := seg.mem.Swap(nil)
	if b == nil {
		return
	}
	s.lruMu.Lock()
	delete(s.resident, seg)
	s.lruMu.Unlock()
	s.memBytes.Add(-seg.cost)
	s.release(b)
}

// drop frees a segment of a deleted stream (why is ErrNotFound) or a
// trimmed one (ErrTrimmed): memory and spill file. An open tail segment
// (never frozen) holds neither.
func (s *Store) drop(seg *segment, why error) error {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	seg.dead, seg.gone = true, why
	s.forget(seg)
	if !seg.onDisk {
		return nil
	}
	seg.onDisk = false
	s.diskBytes.Add(-int64(seg.size))
	return s.retireFile(s.spillPath(seg))
}
