package cache

import (
	"errors"
	"fmt"
)

// Trim discards the bytes of k's stream in [from, to) that whole immutable
// segments hold: each segment that lies within the range leaves memory and
// disk (its buffer is recycled once no reader still copies from it). It is
// for a caller that knows nobody will read those bytes again, such as a
// channel whose only reader consumed them and can never be replayed over
// them. The stream keeps its length; reads and Segment calls of trimmed
// bytes fail with ErrTrimmed, and an Append that replays trimmed bytes is
// accepted without a comparison (nothing is left to compare them with).
// The open tail segment is never trimmed, nor a segment the range cuts.
// Trimming bytes already trimmed does nothing. It returns how many bytes
// this call discarded. Errors: ErrOffset (from < 0 or to < from),
// ErrNotFound, ErrClosed.
func (s *Store) Trim(k Key, from, to int64) (dropped int64, err error) {
	if from < 0 || to < from {
		return 0, fmt.Errorf("cache: trim %v [%d, %d): %w", k, from, to, ErrOffset)
	}
	st, err := s.acquire(k)
	if err != nil {
		return 0, fmt.Errorf("cache: trim %v [%d, %d): %w", k, from, to, err)
	}
	defer s.ops.Done()
	segs, err := st.markTrimmed(from, to, int64(s.cfg.SegmentSize))
	if err != nil {
		return 0, fmt.Errorf("cache: trim %v [%d, %d): %w", k, from, to, err)
	}
	var errs []error
	for _, seg := range segs {
		dropped += int64(seg.size)
		if err := s.drop(seg, ErrTrimmed); err != nil {
			errs = append(errs, fmt.Errorf("cache: trim %v [%d, %d): %w", k, from, to, err))
		}
	}
	s.segments.Add(-int64(len(segs)))
	s.trimBytes.Add(dropped)
	return dropped, errors.Join(errs...)
}

// markTrimmed marks the immutable segments within [from, to) that are not
// trimmed yet and returns them, for the caller to drop.
func (st *stream) markTrimmed(from, to, size int64) ([]*segment, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deleted {
		return nil, ErrNotFound
	}
	frozen := len(st.segs)
	if st.tail != nil {
		frozen-- // the open tail, last of segs
	}
	i := int((from + size - 1) / size)
	if from == st.trimFrom {
		i = max(i, st.trimNext) // a range growing at its end: only the new part
	}
	var segs []*segment
	for ; i < frozen && min(int64(i+1)*size, st.length) <= to; i++ {
		if seg := st.segs[i]; !seg.trimmed {
			seg.trimmed = true
			segs = append(segs, seg)
		}
	}
	st.trimFrom, st.trimNext = from, i
	return segs, nil
}
