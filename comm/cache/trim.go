package cache

import (
	"errors"
	"fmt"
)

// Trim discards the bytes of k's stream below off that whole immutable
// segments hold: each segment that ends at or below off leaves memory and
// disk (its buffer is recycled once no reader still copies from it). It is
// for a caller that knows nobody will read those bytes again, such as a
// channel whose only reader consumed them and can never be restarted
// below off. The stream keeps its length; reads and Segment calls of
// trimmed bytes fail with ErrTrimmed, and an Append that replays trimmed
// bytes is accepted without a comparison (nothing is left to compare them
// with). The open tail segment is never trimmed, nor, therefore, is
// anything at or above its start. Trimming below an earlier trim point
// does nothing. It returns the stream's trim point: every byte below it is
// gone, and it is a multiple of SegmentSize or the sealed length.
// Errors: ErrOffset (off < 0), ErrNotFound, ErrClosed.
func (s *Store) Trim(k Key, off int64) (trimmed int64, err error) {
	if off < 0 {
		return 0, fmt.Errorf("cache: trim %v at %d: %w", k, off, ErrOffset)
	}
	st, err := s.acquire(k)
	if err != nil {
		return 0, fmt.Errorf("cache: trim %v at %d: %w", k, off, err)
	}
	defer s.ops.Done()
	segs, point, err := st.trimTo(off, int64(s.cfg.SegmentSize))
	if err != nil {
		return 0, fmt.Errorf("cache: trim %v at %d: %w", k, off, err)
	}
	var bytes int64
	var errs []error
	for _, seg := range segs {
		bytes += int64(seg.size)
		if err := s.drop(seg, ErrTrimmed); err != nil {
			errs = append(errs, fmt.Errorf("cache: trim %v at %d: %w", k, off, err))
		}
	}
	s.segments.Add(-int64(len(segs)))
	s.trimBytes.Add(bytes)
	return point, errors.Join(errs...)
}

// trimTo marks the immutable segments that end at or below off as
// trimmed and returns them, for the caller to drop, with the trim point.
func (st *stream) trimTo(off, size int64) ([]*segment, int64, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deleted {
		return nil, 0, ErrNotFound
	}
	frozen := len(st.segs)
	if st.tail != nil {
		frozen-- // the open tail, last of segs
	}
	n := st.trimmed
	for n < frozen && st.segEnd(n, size) <= off {
		n++
	}
	segs := st.segs[st.trimmed:n]
	st.trimmed = n
	return segs, st.trimPoint(size), nil
}

// segEnd is the offset just past segment i, an immutable one. st.mu held.
func (st *stream) segEnd(i int, size int64) int64 {
	return min(int64(i+1)*size, st.length)
}

// trimPoint is the offset below which every byte is trimmed. st.mu held.
func (st *stream) trimPoint(size int64) int64 {
	if st.trimmed == 0 {
		return 0
	}
	return st.segEnd(st.trimmed-1, size)
}
