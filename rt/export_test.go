package rt

import "github.com/pispace/pispace/comm"

// QueuedBytes reports the bytes of unexpected messages from src queued in c.
func QueuedBytes(c *Comm, src int) int64 {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	return c.in.srcs[src].queued
}

// CommSpace adapts a comm space as Init does (test-only constructor).
func CommSpace(s *comm.Space) Space { return commSpace{s} }
