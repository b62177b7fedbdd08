package lookup

// Newest returns a snapshot of the most recently created instance of name,
// for status queries (Stat). It changes nothing.
func (s *Space) Newest(name string) (Info, bool) {
	e := s.entries[name]
	if e == nil || len(e.insts) == 0 {
		return Info{}, false
	}
	return e.insts[len(e.insts)-1].info(), true
}
