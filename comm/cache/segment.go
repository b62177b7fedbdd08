package cache

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// segment is one SegmentSize slice of a stream. While it is a stream's open
// tail its bytes live in stream.tail and only index and st are set. Once
// frozen it is immutable: size, crc and the bytes never change again, and
// the bytes live in memory (mem), on disk (onDisk), or both.
type segment struct {
	st    *stream
	index int

	// Set by freeze before the segment is published as immutable.
	size int
	crc  uint32

	mem     atomic.Pointer[[]byte] // bytes in memory; nil when evicted
	lastUse atomic.Int64           // LRU clock of the last access

	// mu guards the transitions between memory and disk.
	mu     sync.Mutex
	cost   int64 // bytes counted in Store.memBytes while mem != nil
	onDisk bool  // a spill file holds the bytes
	dead   bool  // the stream was deleted: no more loads or spills
}

// freeze makes seg immutable with the bytes buf (len = size) and their
// CRC-32C, and returns the bytes. The caller publishes seg afterwards
// under st.mu, then calls makeResident.
func freeze(seg *segment, buf []byte, crc uint32) []byte {
	data := buf[:len(buf):len(buf)]
	seg.size = len(data)
	seg.crc = crc
	seg.cost = int64(cap(buf))
	seg.mem.Store(&data)
	return data
}

// makeResident enters a frozen in-memory segment in the LRU set. The bytes
// are already counted in memBytes (as the tail's buffer).
func (s *Store) makeResident(seg *segment) {
	seg.lastUse.Store(s.clock.Add(1))
	s.lruMu.Lock()
	s.resident[seg] = struct{}{}
	s.lruMu.Unlock()
}

// data returns the bytes of the frozen segment seg, reading them back from
// its spill file if they were evicted. loaded reports a read-back, after
// which the caller should call maybeSpill once it holds no lock.
func (s *Store) data(seg *segment) (b []byte, loaded bool, err error) {
	if p := seg.mem.Load(); p != nil {
		seg.lastUse.Store(s.clock.Add(1))
		return *p, false, nil
	}
	return s.load(seg)
}

// load reads seg back from its spill file and keeps it in memory.
func (s *Store) load(seg *segment) ([]byte, bool, error) {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if p := seg.mem.Load(); p != nil { // another reader loaded it
		return *p, false, nil
	}
	if seg.dead || !seg.onDisk {
		return nil, false, ErrNotFound
	}
	data, cost, err := readSpill(s.spillPath(seg), seg)
	if err != nil {
		return nil, false, err
	}
	seg.cost = cost
	seg.mem.Store(&data)
	s.memBytes.Add(cost)
	s.loads.Add(1)
	s.makeResident(seg)
	return data, true, nil
}

// evict writes seg to its spill file unless one exists, then drops its
// bytes from memory. Readers holding the bytes keep a valid copy.
func (s *Store) evict(seg *segment) error {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	p := seg.mem.Load()
	if p == nil || seg.dead {
		return nil
	}
	if !seg.onDisk {
		if err := writeSpill(s.spillPath(seg), seg, *p); err != nil {
			return fmt.Errorf("%w: segment %d of %v: %w", ErrSpill, seg.index, seg.st.key, err)
		}
		seg.onDisk = true
		s.diskBytes.Add(int64(seg.size))
		s.spills.Add(1)
	}
	s.forget(seg)
	return nil
}

// forget drops seg's bytes from memory. seg.mu must be held.
func (s *Store) forget(seg *segment) {
	if seg.mem.Load() == nil {
		return
	}
	seg.mem.Store(nil)
	s.lruMu.Lock()
	delete(s.resident, seg)
	s.lruMu.Unlock()
	s.memBytes.Add(-seg.cost)
}

// drop frees a segment of a deleted stream: memory and spill file. An open
// tail segment (never frozen) holds neither.
func (s *Store) drop(seg *segment) error {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	seg.dead = true
	s.forget(seg)
	if !seg.onDisk {
		return nil
	}
	seg.onDisk = false
	s.diskBytes.Add(-int64(seg.size))
	if err := os.Remove(s.spillPath(seg)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
