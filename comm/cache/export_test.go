package cache

import (
	"os"
	"syscall"
)

// segmentOf returns segment index of k's stream.
func segmentOf(s *Store, k Key, index int) *segment {
	s.mu.RLock()
	st := s.spaces[k.Space][k.Instance]
	s.mu.RUnlock()
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.segs[index]
}

// SpillPath returns the spill file name of segment index of k's stream.
func SpillPath(s *Store, k Key, index int) string { return s.spillPath(segmentOf(s, k, index)) }

// ChecksumKnown reports whether the CRC of segment index of k's stream
// has been computed.
func ChecksumKnown(s *Store, k Key, index int) bool {
	return segmentOf(s, k, index).crc.Load()&crcKnown != 0
}

// InMemory reports whether segment index of k's stream has its bytes in
// memory (always true of an open tail).
func InMemory(s *Store, k Key, index int) bool {
	s.mu.RLock()
	st := s.spaces[k.Space][k.Instance]
	s.mu.RUnlock()
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.tail != nil && index == len(st.segs)-1 {
		return true
	}
	return st.segs[index].mem.Load() != nil
}

// Waiting reports whether some Wait is blocked on k's stream.
func Waiting(s *Store, k Key) bool {
	s.mu.RLock()
	st := s.spaces[k.Space][k.Instance]
	s.mu.RUnlock()
	if st == nil {
		return false
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.wake != nil
}

// TailView returns the open tail bytes of k's stream as ReadAt sees them,
// pinned, and the function that unpins them.
func TailView(s *Store, k Key) ([]byte, func()) {
	s.mu.RLock()
	st := s.spaces[k.Space][k.Instance]
	s.mu.RUnlock()
	v := st.view()
	return v.tail, func() { s.unpin(v.tb) }
}

// DirectSpills returns how many spill files s wrote with O_DIRECT.
func DirectSpills(s *Store) int64 { return s.directSpills.Load() }

// SpillsDirect reports whether s still tries O_DIRECT for its spill files.
func SpillsDirect(s *Store) bool { return !s.noDirect.Load() }

// NoDirect makes s write its spill files buffered, as after O_DIRECT
// failed. Call it before anything spills.
func NoDirect(s *Store) { s.noDirect.Store(true) }

// RefuseDirect makes s's O_DIRECT opens fail with EINVAL, as on a file
// system without O_DIRECT. Call it before anything spills.
func RefuseDirect(s *Store) {
	s.openDirect = func(path string, flag int) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EINVAL}
	}
}

// SpillAlign is the block size of the spill file layout.
const SpillAlign = spillAlign

// FreeFiles returns how many spill files s keeps for reuse.
func FreeFiles(s *Store) int {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	return len(s.freeFiles)
}
