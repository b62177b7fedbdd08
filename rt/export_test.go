package rt

// QueuedBytes reports the bytes of unexpected messages from src queued in c.
func QueuedBytes(c *Comm, src int) int64 {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	return c.in.srcs[src].queued
}
