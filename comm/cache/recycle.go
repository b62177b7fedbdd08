package cache

import "sync/atomic"

// buffer is a segment buffer in memory: first an open tail's, then, once
// the tail is frozen, the same buffer is the segment's. A fresh buffer
// struct is made for every buffer put to use (a tail's growth, a
// read-back), so a *buffer never comes back to life once it is freed: only
// its bytes are reused, under a new struct.
//
// Whoever copies from the bytes without holding the lock that excludes
// their release pins the buffer first and unpins it after the copy (see
// LOCKS.md). Whoever takes the bytes out of use (forget, destroy) calls
// release instead of recycling them itself; the bytes go to the free list
// when the last pin and the release have both happened, exactly once.
type buffer struct {
	b     []byte       // the whole buffer: len == cap
	state atomic.Int64 // pins in the low bits, plus bufReleased and bufFreed
}

const (
	bufReleased = 1 << 61 // release was called: the last unpin frees the bytes
	bufFreed    = 1 << 62 // the bytes were handed to recycle; terminal
)

// pinMem pins and returns seg's in-memory buffer, or returns nil if seg
// is not in memory. The pin is taken, then seg.mem is read again: if it
// still holds the buffer, the release that would take it away has not
// happened yet (atomics are sequentially consistent), so it will see the
// pin and leave the freeing to the last unpin.
func (s *Store) pinMem(seg *segment) *buffer {
	for {
		b := seg.mem.Load()
		if b == nil {
			return nil
		}
		b.state.Add(1)
		if seg.mem.Load() == b {
			return b
		}
		s.unpin(b) // evicted meanwhile: it may even be this unpin that frees it
	}
}

// unpin drops a pin taken on b; the last pin of a released buffer frees
// its bytes.
func (s *Store) unpin(b *buffer) {
	if b.state.Add(-1) == bufReleased {
		s.freeBuffer(b)
	}
}

// release takes b out of use: nothing new may pin it afterwards (its
// owner made it unreachable first). Its bytes are freed now if no pin is
// held, else by the last unpin. It is called once per buffer.
func (s *Store) release(b *buffer) {
	if b.state.Or(bufReleased) == 0 {
		s.freeBuffer(b)
	}
}

// freeBuffer recycles b's bytes unless someone else already did, or a late
// pinner (one that will find b gone and unpin at once) got in between; that
// pinner's unpin then frees it.
func (s *Store) freeBuffer(b *buffer) {
	if b.state.CompareAndSwap(bufReleased, bufFreed) {
		s.putBack(b.b)
	}
}

// fresh returns a new whole segment buffer, from Config.Memory when it
// has one, from the heap otherwise.
func (s *Store) fresh() []byte {
	size := s.cfg.SegmentSize
	if m := s.cfg.Memory; m != nil {
		if b := m.Alloc(size); len(b) == size && cap(b) == size {
			return b
		}
	}
	return make([]byte, size)
}

// TakeBuffer returns a whole segment buffer for AppendOwned: a free one
// (faulted in, old contents), else a fresh one from Config.Memory whose
// memory a [Reserver] took without zeroing it (cold: its user must fill
// it by other means than stores through the buffer, which would zero
// each page first, see shm.Rx.WriteSlot), else a fresh one faulted in.
// It is not counted in Stats until a segment takes it; one it does not
// take goes back with GiveBuffer.
func (s *Store) TakeBuffer() (b []byte, cold bool) {
	if b = s.takeFree(); b != nil {
		return b, false
	}
	b = s.fresh()
	if r, ok := s.cfg.Memory.(Reserver); ok && r.Reserve(b) == nil {
		return b, true
	}
	if s.filler == nil { // a Filler writes holes itself (see ready); its Reserve just failed
		populate(b)
	}
	return b, false
}

// ready prepares a fresh buffer for the bytes to come: faulted in, in one
// call (see populate), unless the Filler writes them, which fills holes
// itself and for which this process's faults are what it avoids; a
// Reserver then takes the memory ahead, without zeroing it.
func (s *Store) ready(b []byte) {
	if s.filler == nil {
		populate(b)
		return
	}
	if r, ok := s.filler.(Reserver); ok {
		r.Reserve(b) // an error leaves the pages to the writes
	}
}

// fill copies p to dst, with the Filler where there is one: also into a
// buffer back from the free list, which the Filler wrote before, so that
// this process's mapping never touched it either. (Writing recycled
// buffers through the mapping instead, in a job that trims what it
// consumed, made its 64 KiB OSU latency without restarts 129-135 ->
// 195-211 us, 3 interleaved rounds.)
func (s *Store) fill(dst, p []byte) {
	if len(p) == 0 {
		return
	}
	if s.filler == nil || s.filler.Fill(dst, p) != nil {
		copy(dst, p)
	}
}

// GiveBuffer takes back a buffer from TakeBuffer that no segment took,
// once nothing uses it any more.
func (s *Store) GiveBuffer(b []byte) { s.putBack(b) }

// putBack puts b, a buffer nobody uses any more, on the free list (see
// recycle), or lets it go, and reports whether it kept it.
func (s *Store) putBack(b []byte) bool {
	if s.recycle(b) {
		return true
	}
	s.letGo(b)
	return false
}

// letGo lets a buffer go for good: back to Config.Memory if it came from
// there, to the garbage collector otherwise.
func (s *Store) letGo(b []byte) {
	if m := s.cfg.Memory; m != nil && b != nil {
		m.Free(b)
	}
}

// recycle puts b, a buffer nobody reads any more, on the free list if it is
// a whole segment buffer and the list has room: at most cfg.RecycleBytes,
// and only while the buffers in use plus the free ones stay within
// cfg.MemoryBytes. It reports whether it kept b; putBack lets go of one
// it did not.
func (s *Store) recycle(b []byte) bool {
	size := s.cfg.SegmentSize
	if cap(b) != size {
		return false
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if s.freeClosed || int64(len(s.freeList)+1)*int64(size) > s.cfg.RecycleBytes ||
		s.memBytes.Load()+s.freeBytes.Load()+int64(size) > s.cfg.MemoryBytes {
		return false
	}
	s.freeList = append(s.freeList, b[:size])
	s.freeBytes.Add(int64(size))
	return true
}

// takeFree returns a free segment buffer (len SegmentSize, old contents),
// or nil if there is none. The caller counts it in memBytes.
func (s *Store) takeFree() []byte {
	if s.freeBytes.Load() == 0 {
		return nil
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	n := len(s.freeList)
	if n == 0 {
		return nil
	}
	b := s.freeList[n-1]
	s.freeList[n-1] = nil
	s.freeList = s.freeList[:n-1]
	s.freeBytes.Add(-int64(len(b)))
	s.recycled.Add(1)
	return b
}

// trimFree lets free buffers go while the buffers in use plus the free
// ones exceed cfg.MemoryBytes: called after memBytes grew.
func (s *Store) trimFree() {
	if s.freeBytes.Load() == 0 || s.memBytes.Load()+s.freeBytes.Load() <= s.cfg.MemoryBytes {
		return
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	for n := len(s.freeList); n > 0 && s.memBytes.Load()+s.freeBytes.Load() > s.cfg.MemoryBytes; n-- {
		s.freeBytes.Add(-int64(len(s.freeList[n-1])))
		s.letGo(s.freeList[n-1])
		s.freeList[n-1] = nil
		s.freeList = s.freeList[:n-1]
	}
}

// closeFree empties the free list for good: buffers freed after Close go
// to the garbage collector.
func (s *Store) closeFree() {
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	s.freeClosed = true
	for _, b := range s.freeList {
		s.letGo(b)
	}
	clear(s.freeList)
	s.freeList = nil
	s.freeBytes.Store(0)
}

// wantPrefill wakes the prefilling goroutine when the free list holds
// fewer than s.prefillWant bytes (see Config.Prefill).
func (s *Store) wantPrefill() {
	if s.prefillSig == nil || s.freeBytes.Load() >= s.prefillWant {
		return
	}
	select {
	case s.prefillSig <- struct{}{}:
	default:
	}
}

// prefillLoop faults in fresh segment buffers and puts them on the free
// list while it holds fewer than s.prefillWant bytes and the memory bound
// leaves room (checked first, so that no buffer is faulted in only to be
// refused), each time wantPrefill wakes it, until Close.
func (s *Store) prefillLoop() {
	defer s.prefillDone.Done()
	size := s.cfg.SegmentSize
	for {
		select {
		case <-s.done:
			return
		case <-s.prefillSig:
		}
		for s.freeBytes.Load() < s.prefillWant && s.memBytes.Load()+s.freeBytes.Load()+int64(size) <= s.cfg.MemoryBytes {
			select {
			case <-s.done:
				return
			default:
			}
			b := s.fresh()
			s.ready(b)
			if !s.putBack(b) {
				break // the bounds moved meanwhile, or Close came
			}
			s.prefilled.Add(1)
		}
	}
}
