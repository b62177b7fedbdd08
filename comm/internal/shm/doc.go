// Package shm moves large payloads between two processes of one host
// through a shared-memory ring instead of through the Unix socket that
// connects them, so that a payload is copied twice in user space (into the
// ring, out of it) instead of twice through the kernel with the system
// calls, socket buffers and wake-ups that go with it.
//
// The producing side of a connection makes a ring ([NewTx]): a header,
// one page holding the consumer's release position, and a data area, each
// a memfd sealed against shrinking, so that the peer's mappings never
// fault. It sends both descriptors once, attached to a frame on the socket
// ([Tx.Offer]), and only after the connection has carried [After] bytes;
// the consumer reads plainly at first and with recvmsg, collecting
// descriptors, once it has read a quarter of that ([Lazy], [Reader]), and
// maps the ring ([Map]), the data read-only. From then on a
// data frame may carry a reference (position, length) instead of its
// bytes: the producer copies the bytes into the ring ([Tx.Put]) and writes
// the small frame; the consumer reads them in place ([Rx.View]) and
// releases them ([Rx.Release]). Frames are consumed in the order they are
// written, so the ring is a FIFO and the release position is all the
// producer needs to know. A full ring is not waited for by default: the
// producer sends that payload inline, through the socket. A producer that
// would block on the socket anyway (its consumer being the bottleneck)
// may instead wait for room ([Tx.Wait]): it sleeps in a cross-process
// futex on the header, which the consumer's release rings; the wait is
// bounded, so a dead or misbehaving consumer only costs a short delay.
//
// Fresh memory is slow (a page fault per page, on both sides), so data
// areas are pooled per process: a ring whose consumer released everything
// leaves its area to the next ring, with a new header. The area is sealed
// against writable mappings other than its producer's, so a former
// consumer that still maps it can only read it.
//
// A producer that keeps the bytes anyway (a comm server's cache) may
// offer an [Arena] with its ring: its buffers live in memfds that the
// consumer maps too, and a frame then references them in place
// ([Tx.Lend]) with no copy at all, the producer keeping them until the
// consumer has released the frame. The producer may also give the
// consumer slots of the arena to write in ([Tx.Give], [Rx.Take]), through
// a queue in the ring's header, for bytes travelling the other way.
//
// The ring carries bytes, never trust: the consumer checks every reference
// against the ring's bounds and against the order of earlier ones, and a
// producer ignores a release position that makes no sense. A peer that
// scribbles on the header can only spoil the payloads sent to itself.
package shm
