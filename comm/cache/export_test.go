package cache

// SpillPath returns the spill file name of segment index of k's stream.
func SpillPath(s *Store, k Key, index int) string {
	s.mu.RLock()
	st := s.spaces[k.Space][k.Instance]
	s.mu.RUnlock()
	st.mu.RLock()
	seg := st.segs[index]
	st.mu.RUnlock()
	return s.spillPath(seg)
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
