package cache

import (
	"bytes"
	"errors"
	"fmt"
)

// minTail is the smallest buffer allocated for an open tail segment. The
// first segment of a stream grows by doubling up to SegmentSize, so a small
// channel costs little; later tails get SegmentSize at once.
const minTail = 4 << 10

// sealEvent is a segment that became immutable, reported to OnSeal once
// the writer holds no lock. When OnSeal is set, buf holds the segment's
// buffer pinned until OnSeal returns.
type sealEvent struct {
	seg  *segment
	buf  *buffer
	data []byte
}

// Append writes p at offset off of k's stream and returns the stream's
// length afterwards (also on error). It creates the stream when off is 0
// and the key is unknown, so Append(k, 0, nil) creates an empty stream.
//
// Bytes of p below the current length are compared with the stored ones:
// identical bytes are dropped silently (the replay of a restarted writer),
// differing ones fail with ErrDiverged and nothing is written. Bytes at and
// beyond the length are appended. The checks come in this order:
// off > length is ErrGap; a differing overlap is ErrDiverged; new bytes on
// a sealed stream are ErrSealed (an identical replay of a sealed stream
// succeeds).
//
// The payload is written segment by segment. An error after some segments
// (ErrFull in a memory-only store, ErrSpill, ErrNotFound when the stream
// is deleted meanwhile) leaves the bytes below the returned length stored;
// a retry at any offset up to that length is safe.
//
// One writer per key is expected; concurrent Appends on one key are safe
// but interleave segment by segment. Errors: ErrGap, ErrDiverged,
// ErrSealed, ErrOffset (off < 0), ErrFull, ErrSpill, ErrCorrupt (comparing
// with a damaged spill file), ErrNotFound, ErrClosed.
func (s *Store) Append(k Key, off int64, p []byte) (length int64, err error) {
	if off < 0 {
		return 0, fmt.Errorf("cache: append %v at %d: %w", k, off, ErrOffset)
	}
	st, err := s.acquireOrCreate(k, off == 0)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = ErrGap // an unknown stream has length 0
		}
		return 0, fmt.Errorf("cache: append %v at %d: %w", k, off, err)
	}
	defer s.ops.Done()
	for {
		n, ev, length, _, err := s.appendStep(st, off, p, nil)
		s.fire(k, ev)
		if err == nil {
			err = s.maybeSpill()
		}
		if err != nil {
			return length, fmt.Errorf("cache: append %v at %d: %w", k, off, err)
		}
		off += int64(n)
		p = p[n:]
		if len(p) == 0 {
			return length, nil
		}
	}
}

// appendStep handles the part of p that lies within the segment holding
// off: it compares it with stored bytes or appends it. It returns how many
// bytes of p it consumed (at least one unless p is empty or on error).
// With own set (AppendOwned), a fresh tail may take own as its buffer
// (see appendTail), returned pinned for the caller.
func (s *Store) appendStep(st *stream, off int64, p []byte, own []byte) (int, sealEvent, int64, *buffer, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	var n int
	var ev sealEvent
	var taken *buffer
	var err error
	switch length := st.length; {
	case st.deleted:
		err = ErrNotFound
	case off > length:
		err = fmt.Errorf("%w: length %d", ErrGap, length)
	case off < length:
		n, err = s.compare(st, off, p)
	case len(p) == 0:
	case st.sealed:
		err = fmt.Errorf("%w: length %d", ErrSealed, length)
	default:
		n, ev, taken, err = s.appendTail(st, p, own)
	}
	return n, ev, st.length, taken, err
}

// compare checks the bytes of p that lie below the stream's length and
// within off's segment against the stored ones. st.wmu must be held.
func (s *Store) compare(st *stream, off int64, p []byte) (int, error) {
	size := int64(s.cfg.SegmentSize)
	i := off / size
	start := i * size
	end := min(off+int64(len(p)), st.length, start+size)
	n := int(end - off)
	if st.segs[i].trimmed {
		return n, nil // trimmed: nothing left to compare with
	}
	var stored []byte
	if st.tail != nil && int(i) == len(st.segs)-1 {
		stored = st.tail // wmu held: the tail stays ours
	} else {
		b, data, _, err := s.data(st.segs[i]) // Append spills after the step
		if err != nil {
			return 0, err
		}
		defer s.unpin(b)
		stored = data
	}
	if !bytes.Equal(stored[off-start:end-start], p[:n]) {
		return 0, fmt.Errorf("%w: in [%d, %d)", ErrDiverged, off, end)
	}
	return n, nil
}

// appendTail appends as much of p as fits in the open tail segment,
// opening one if needed, and freezes the tail when it fills up. A fresh
// tail takes own as its buffer when it is a whole segment buffer and the
// memory bound allows (see AppendOwned), and returns it pinned. Bytes
// already in place (p in the tail's buffer where they belong) are not
// copied. st.wmu must be held.
func (s *Store) appendTail(st *stream, p []byte, own []byte) (int, sealEvent, *buffer, error) {
	size := s.cfg.SegmentSize
	buf, tb := st.tail, st.tailBuf
	fresh := buf == nil
	l := len(buf)
	n := min(len(p), size-l)
	var taken *buffer
	if fresh && len(st.segs) > 0 && len(own) == size && cap(own) == size && s.take(size) {
		tb, buf = &buffer{b: own}, own[:0]
		tb.state.Store(1) // pinned for AppendOwned's caller
		taken = tb
	} else if l+n > cap(buf) {
		need := l + n
		if fresh && len(st.segs) > 0 {
			need = size // the stream has filled a segment: expect another
		}
		nb, err := s.grow(buf, need)
		if err != nil {
			return 0, sealEvent{}, nil, err
		}
		tb, buf = nb, nb.b[:l] // a replaced smaller buffer is never recycled: readers may still copy from it
	}
	buf = buf[:l+n]
	if n > 0 && &buf[l] != &p[0] {
		s.fill(buf[l:], p[:n]) // beyond the published length: no reader looks here
	}
	var seg *segment
	if fresh {
		seg = &segment{st: st, index: len(st.segs)}
		s.segments.Add(1)
	} else {
		seg = st.segs[len(st.segs)-1]
	}
	var ev sealEvent
	if len(buf) == size {
		ev = s.freezeEvent(seg, tb, buf)
		buf, tb = nil, nil
	}
	st.mu.Lock()
	if fresh {
		st.segs = append(st.segs, seg)
	}
	st.length += int64(n)
	st.tail, st.tailBuf = buf, tb
	st.wakeLocked()
	st.mu.Unlock()
	if ev.seg != nil {
		s.makeResident(seg)
	}
	return n, ev, taken, nil
}

// take counts a whole segment buffer coming into use in memBytes, unless
// a memory-only store would pass its bound.
func (s *Store) take(size int) bool {
	if m := s.memBytes.Add(int64(size)); s.runDir == "" && m > s.cfg.MemoryBytes {
		s.memBytes.Add(-int64(size))
		return false
	}
	s.trimFree()
	return true
}

// AppendOwned is Append of p, the bytes at off of k's stream, which lie
// in buf, a whole segment buffer from TakeBuffer: when off begins a
// segment other than the first and k's stream has reached it, the
// segment takes buf as its buffer instead of copying p, and AppendOwned
// returns the buffer pinned (unpin, to be called once, when the caller's
// peer no longer writes into buf). Otherwise (unpin nil) it appends as
// Append does, and buf stays the caller's. p must lie within one segment.
// Later bytes of that segment written into buf where they belong are
// appended without a copy. Errors: those of Append.
func (s *Store) AppendOwned(k Key, off int64, buf, p []byte) (length int64, unpin func(), err error) {
	size := int64(s.cfg.SegmentSize)
	if off <= 0 || off%size != 0 || len(p) == 0 || len(p) > len(buf) || &buf[0] != &p[0] {
		length, err = s.Append(k, off, p)
		return length, nil, err
	}
	st, err := s.acquireOrCreate(k, false)
	if err != nil {
		length, err = s.Append(k, off, p) // its error
		return length, nil, err
	}
	n, ev, length, taken, err := s.appendStep(st, off, p, buf)
	s.ops.Done()
	s.fire(k, ev)
	if err == nil {
		err = s.maybeSpill()
	}
	if err == nil && n < len(p) { // not a tail it could take: the rest as Append does
		length, err = s.Append(k, off+int64(n), p[n:])
	}
	if err != nil {
		if taken != nil {
			s.unpin(taken)
		}
		return length, nil, fmt.Errorf("cache: append %v at %d: %w", k, off, err)
	}
	if taken == nil {
		return length, nil, nil
	}
	return length, func() { s.unpin(taken) }, nil
}

// freezeEvent freezes seg (see freeze) and returns its seal event, the
// buffer pinned for OnSeal if there is one.
func (s *Store) freezeEvent(seg *segment, tb *buffer, buf []byte) sealEvent {
	pin := s.cfg.OnSeal != nil
	ev := sealEvent{seg: seg, data: freeze(seg, tb, buf, pin)}
	if pin {
		ev.buf = tb
	}
	return ev
}

// populateMin is the smallest fresh buffer populated in one go (see
// populate); smaller ones are not worth the system call.
const populateMin = 64 << 10

// grow returns a new buffer holding a copy of buf with room for need
// bytes, counting the extra capacity in memBytes. A whole segment buffer
// comes from the free list if it can. A memory-only store refuses to pass
// its bound.
func (s *Store) grow(buf []byte, need int) (*buffer, error) {
	c := max(2*cap(buf), minTail)
	for c < need {
		c *= 2
	}
	c = min(c, s.cfg.SegmentSize)
	delta := int64(c - cap(buf))
	if m := s.memBytes.Add(delta); s.runDir == "" && m > s.cfg.MemoryBytes {
		s.memBytes.Add(-delta)
		return nil, fmt.Errorf("%w: %d bytes in memory, bound %d", ErrFull, m-delta, s.cfg.MemoryBytes)
	}
	var nb []byte
	if c == s.cfg.SegmentSize {
		if nb = s.takeFree(); nb == nil {
			nb = s.fresh()
			s.ready(nb)
		}
		s.wantPrefill()
	} else {
		nb = make([]byte, c)
		if c >= populateMin {
			populate(nb)
		}
	}
	s.fill(nb, buf)
	s.trimFree()
	return &buffer{b: nb}, nil
}

// fire calls OnSeal for ev, if any, and unpins its buffer. No lock may be
// held.
func (s *Store) fire(k Key, ev sealEvent) {
	if ev.buf == nil {
		return
	}
	defer s.unpin(ev.buf)
	s.cfg.OnSeal(k, ev.seg.index, ev.data, ev.seg.checksum(ev.data))
}

// Seal marks k's stream complete at length, which must be its current
// length. The partial last segment, if any, becomes immutable (and is
// reported to OnSeal). Readers at the end then get io.EOF. Sealing again
// at the same length does nothing. Seal creates an unknown stream when
// length is 0 (a channel closed without data).
// Errors: ErrLength, ErrNotFound, ErrClosed, ErrSpill.
func (s *Store) Seal(k Key, length int64) error {
	st, err := s.acquireOrCreate(k, length == 0)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w: length 0, seal at %d", ErrLength, length)
		}
		return fmt.Errorf("cache: seal %v: %w", k, err)
	}
	defer s.ops.Done()
	ev, err := s.seal(st, length)
	if err != nil {
		return fmt.Errorf("cache: seal %v: %w", k, err)
	}
	s.fire(k, ev)
	if err := s.maybeSpill(); err != nil {
		return fmt.Errorf("cache: seal %v: %w", k, err)
	}
	return nil
}

func (s *Store) seal(st *stream, length int64) (sealEvent, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	switch {
	case st.deleted:
		return sealEvent{}, ErrNotFound
	case length != st.length:
		return sealEvent{}, fmt.Errorf("%w: length %d, seal at %d", ErrLength, st.length, length)
	case st.sealed:
		return sealEvent{}, nil
	}
	var ev sealEvent
	if st.tail != nil {
		ev = s.freezeEvent(st.segs[len(st.segs)-1], st.tailBuf, st.tail)
	}
	st.mu.Lock()
	st.sealed = true
	st.tail, st.tailBuf = nil, nil
	st.wakeLocked()
	st.mu.Unlock()
	if ev.seg != nil {
		s.makeResident(ev.seg)
	}
	return ev, nil
}
