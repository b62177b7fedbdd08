package cache

import (
	"context"
	"fmt"
	"io"
)

// ReadAt copies into p the bytes of k's stream from offset off, as many as
// are available, and returns how many. It never waits (see Wait). Unlike
// [io.ReaderAt], a short read is not an error: n < len(p) with a nil error
// means the stream ends, for now, at off+n. At the end of the stream it
// returns 0 and nil while the stream is open, and 0 and io.EOF once it is
// sealed. Reads of immutable segments do not wait for the writer; a
// spilled segment is read back (and checked) first.
// Errors: io.EOF, ErrOffset (off < 0 or off > length), ErrNotFound,
// ErrCorrupt, ErrClosed.
func (s *Store) ReadAt(k Key, p []byte, off int64) (n int, err error) {
	st, err := s.acquire(k)
	if err != nil {
		return 0, fmt.Errorf("cache: read %v at %d: %w", k, off, err)
	}
	defer s.ops.Done()
	v := st.view()
	if v.tb != nil {
		defer s.unpin(v.tb)
	}
	switch {
	case v.deleted:
		return 0, fmt.Errorf("cache: read %v at %d: %w", k, off, ErrNotFound)
	case off < 0 || off > v.length:
		return 0, fmt.Errorf("cache: read %v at %d: %w: length %d", k, off, ErrOffset, v.length)
	case off == v.length && v.sealed:
		return 0, io.EOF
	}
	n, loaded, err := s.copyOut(v.segs, v.tail, p, off, v.length)
	if loaded {
		s.maybeSpill() // best effort: Append reports spill failures
	}
	if err != nil {
		return n, fmt.Errorf("cache: read %v at %d: %w", k, off, err)
	}
	return n, nil
}

// view is what a reader sees of a stream at one moment: length, state,
// segments and the open tail's bytes, if any, with tb, their buffer,
// pinned. The reader unpins tb when it is done copying.
type view struct {
	length          int64
	sealed, deleted bool
	segs            []*segment
	tail            []byte
	tb              *buffer
}

// view snapshots st for a reader. The tail's buffer is pinned under st.mu,
// which excludes its release (destroy takes st.mu; a frozen tail is
// evicted only once published without it under st.mu), so no check is
// needed; while the reader copies, the tail may be frozen, evicted and
// released, and the pin keeps its bytes from reuse.
func (st *stream) view() view {
	st.mu.RLock()
	defer st.mu.RUnlock()
	v := view{length: st.length, sealed: st.sealed, deleted: st.deleted,
		segs: st.segs, tail: st.tail, tb: st.tailBuf}
	if v.tb != nil {
		v.tb.state.Add(1)
	}
	return v
}

// copyOut copies the stream bytes [off, length) into p, segment by
// segment, from a snapshot of the stream: segs, and tail, the open tail
// segment's bytes (the last of segs) or nil, pinned by the caller.
func (s *Store) copyOut(segs []*segment, tail []byte, p []byte, off, length int64) (n int, loaded bool, err error) {
	size := int64(s.cfg.SegmentSize)
	for n < len(p) && off < length {
		i := off / size
		if tail != nil && int(i) == len(segs)-1 {
			c := copy(p[n:], tail[off-i*size:length-i*size])
			n += c
			off += int64(c)
			continue
		}
		b, data, l, err := s.data(segs[i])
		loaded = loaded || l
		if err != nil {
			return n, loaded, err
		}
		c := copy(p[n:], data[off-i*size:min(int64(len(data)), length-i*size)])
		s.unpin(b)
		n += c
		off += int64(c)
	}
	return n, loaded, nil
}

// Wait blocks until k's stream is longer than off or sealed, and returns
// its length and sealed state then; it returns at once if that is already
// so. Errors: ctx.Err() when ctx ends first, ErrClosed when the store
// closes, ErrNotFound for an unknown key or one deleted while waiting.
func (s *Store) Wait(ctx context.Context, k Key, off int64) (length int64, sealed bool, err error) {
	st, err := s.acquire(k)
	if err != nil {
		return 0, false, fmt.Errorf("cache: wait %v at %d: %w", k, off, err)
	}
	defer s.ops.Done()
	for {
		st.mu.Lock()
		length, sealed, deleted := st.length, st.sealed, st.deleted
		if deleted || length > off || sealed {
			st.mu.Unlock()
			if deleted {
				return 0, false, fmt.Errorf("cache: wait %v at %d: %w", k, off, ErrNotFound)
			}
			return length, sealed, nil
		}
		if st.wake == nil {
			st.wake = make(chan struct{})
		}
		wake := st.wake
		st.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return length, sealed, ctx.Err()
		case <-s.done:
			return length, sealed, fmt.Errorf("cache: wait %v at %d: %w", k, off, ErrClosed)
		}
	}
}

// Segment returns immutable segment index of k's stream: its bytes, which
// must not be modified, their CRC-32C, and a release function. It is how a
// coder or a repair reads whole segments, and how the server sends them
// without a copy. A spilled segment is read back first.
//
// The bytes stay valid, even if the stream is deleted or the segment
// spilled meanwhile, until release is called; the store may then reuse
// their buffer for another segment. The caller must call release exactly
// once when it no longer reads data (on error release is nil). Forgetting
// to call it is safe, the buffer is then left to the garbage collector
// instead of being recycled.
// Errors: ErrNotSealed (the open tail), ErrOffset (no such segment),
// ErrNotFound, ErrCorrupt, ErrClosed.
func (s *Store) Segment(k Key, index int) (data []byte, crc uint32, release func(), err error) {
	st, err := s.acquire(k)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("cache: segment %d of %v: %w", index, k, err)
	}
	defer s.ops.Done()
	st.mu.RLock()
	segs, open, deleted := st.segs, st.tail != nil, st.deleted
	st.mu.RUnlock()
	switch {
	case deleted:
		err = ErrNotFound
	case index < 0 || index >= len(segs):
		err = fmt.Errorf("%w: %d segments", ErrOffset, len(segs))
	case open && index == len(segs)-1:
		err = ErrNotSealed
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("cache: segment %d of %v: %w", index, k, err)
	}
	seg := segs[index]
	b, data, loaded, err := s.data(seg)
	if loaded {
		s.maybeSpill()
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("cache: segment %d of %v: %w", index, k, err)
	}
	return data, seg.checksum(data), func() { s.unpin(b) }, nil
}

// View returns the bytes of k's stream from off to the end of off's
// segment, or to the current end of the open tail, at most max of them,
// without copying: the stored bytes themselves, which must not be
// modified. The store keeps them intact (even if the stream is deleted,
// trimmed or the segment spilled meanwhile) until release is called,
// exactly once. It is how the server sends a read stream: what a segment
// or the open tail holds below the stream's length never changes.
// Like ReadAt it never waits: at the end of the stream it returns no
// bytes and a nil error while the stream is open, io.EOF once sealed.
// Without bytes there is nothing to release: release is nil. A spilled
// segment is read back first.
// Errors: io.EOF, ErrOffset (off < 0 or off > length), ErrNotFound,
// ErrTrimmed, ErrCorrupt, ErrClosed.
func (s *Store) View(k Key, off int64, max int) (data []byte, release func(), err error) {
	st, err := s.acquire(k)
	if err != nil {
		return nil, nil, fmt.Errorf("cache: view %v at %d: %w", k, off, err)
	}
	defer s.ops.Done()
	v := st.view()
	unpinTail := func() {
		if v.tb != nil {
			s.unpin(v.tb)
		}
	}
	if v.deleted || off < 0 || off > v.length {
		unpinTail()
		err := error(ErrNotFound)
		if !v.deleted {
			err = fmt.Errorf("%w: length %d", ErrOffset, v.length)
		}
		return nil, nil, fmt.Errorf("cache: view %v at %d: %w", k, off, err)
	}
	if off == v.length || max <= 0 {
		unpinTail()
		if off == v.length && v.sealed {
			return nil, nil, io.EOF
		}
		return nil, nil, nil
	}
	size := int64(s.cfg.SegmentSize)
	i := off / size
	if v.tail != nil && int(i) == len(v.segs)-1 {
		end := min(v.length-i*size, off-i*size+int64(max))
		return v.tail[off-i*size : end], unpinTail, nil
	}
	unpinTail()
	b, seg, loaded, err := s.data(v.segs[i])
	if loaded {
		s.maybeSpill() // best effort: Append reports spill failures
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cache: view %v at %d: %w", k, off, err)
	}
	end := min(int64(len(seg)), v.length-i*size, off-i*size+int64(max))
	return seg[off-i*size : end], func() { s.unpin(b) }, nil
}
