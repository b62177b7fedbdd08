package shm

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The doorbell: a producer whose ring is full may wait for the consumer
// to release room ([Tx.Wait]) instead of sending a payload inline. It
// sleeps in a futex on the low 32 bits of the header's release position
// (a MAP_SHARED page of both processes, so a non-private futex works
// across them): every release that gives back bytes changes them, since
// a ring holds less than 4 GiB. It raises the bell word before it looks
// at the release position one last time, and the consumer, after storing
// the position, wakes it only when the bell is up ([Rx.Release]): either
// the producer sees the new position or the consumer sees the bell, so no
// wake-up is lost, and a consumer that nobody waits for pays one atomic
// load. Every wait is bounded, so a consumer that dies, stalls or
// scribbles on the header costs at most Stall without progress, after
// which the producer sends inline as without a doorbell.

const (
	bellOffset = 64 // the bell word: its own cache line, away from the release position

	// The bell's values while up: the word the producer sleeps on.
	bellHead     = 1 // the release position (Wait)
	bellReturned = 2 // the count of loans returned (WaitLoans)

	futexWait = 0 // FUTEX_WAIT, not FUTEX_PRIVATE: the word is shared between processes
	futexWake = 1 // FUTEX_WAKE
)

// Slice bounds one sleep of a waiting producer: it looks at the release
// position, its deadline and its connection at least this often.
const Slice = 2 * time.Millisecond

// Stall is how long a waiting producer waits without the consumer making
// progress (releasing bytes, or reading the connection) before it gives
// up. After that it does not wait again until the consumer has released
// something. The bound is for a consumer that will never release (a bug,
// a cycle of waits): it costs one Stall, not one per payload. A consumer
// whose application pauses longer only sends the producer inline once.
const Stall = 100 * time.Millisecond

// slice and stall are Slice and Stall, for tests to change.
var slice, stall = Slice, Stall

func bellOf(hdr []byte) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&hdr[bellOffset]))
}

// Waitable reports whether Wait might make room for a payload of n bytes:
// it is no larger than the ring, and the consumer has released something
// since a wait last gave up. A caller that must do work before waiting
// (write the frames referring to what it already put, so that the
// consumer can release them) asks this first.
func (t *Tx) Waitable(n int) bool {
	if t.area == nil || n <= 0 || n > len(t.data) {
		return false
	}
	return !t.stuck || t.head.Load() != t.stuckAt
}

// Wait waits until a payload of n bytes fits in the room the consumer
// has released, and reports whether it does. It gives up, reporting
// false, when the payload cannot fit (see Waitable), when deadline
// passes (the zero time is none), when the connection the ring was
// offered on is closed at either end (it looks at least every Slice),
// when the
// consumer makes no progress for Stall, or when the release position
// makes no sense (behind an earlier one or ahead of what was put). The
// consumer makes progress when it releases bytes or reads from the
// connection: the frames written before those referring to the ring
// (inline payloads among them) are read first. Every frame referring to
// bytes already put must have been written before Wait: the consumer
// releases only what it has read of.
func (t *Tx) Wait(n int, deadline time.Time) bool {
	if !t.Waitable(n) {
		return false
	}
	return t.wait(bellHead, func(head uint64) bool {
		_, _, ok := t.where(head, n)
		return ok
	}, deadline)
}

// WaitLoans is Wait for loans (see Lend): it waits until the consumer has
// released enough of them for n more bytes to stay within limit, and
// reports whether they do, giving up as Wait does. The consumer releases
// only what it has read of: every frame referring to a loan must have
// been written first.
func (t *Tx) WaitLoans(n, limit int, deadline time.Time) bool {
	if t.arena == nil || n <= 0 || n > limit || !t.Waitable(1) {
		return false
	}
	return t.wait(bellReturned, func(uint64) bool {
		t.Reclaim()
		return t.lentBytes+n <= limit
	}, deadline)
}

// wait waits until fits, given the consumer's release position, says yes.
// It sleeps on the header word that bell names (the release position or
// the count of loans returned), which the consumer changes before it
// rings the bell; a change of either counts as progress.
func (t *Tx) wait(bell uint32, fits func(head uint64) bool, deadline time.Time) bool {
	word := t.head
	if bell == bellReturned {
		word = t.returned
	}
	head, back := t.head.Load(), t.returned.Load()
	if head > t.next {
		t.stuck, t.stuckAt = true, head // nonsense: not to be waited on
		return false
	}
	queued, open := t.unread()
	moved := time.Now()
	defer t.bell.Store(0)
	for {
		if fits(head) {
			t.stuck = false
			return true
		}
		now := time.Now()
		if q, ok := t.unread(); !ok {
			open = false
		} else if q < queued {
			queued, moved = q, now // the consumer reads the connection
		}
		left := stall - now.Sub(moved)
		if !deadline.IsZero() {
			left = min(left, deadline.Sub(now))
		}
		if left <= 0 || !open {
			t.stuck, t.stuckAt = true, head
			return false
		}
		w := word.Load()
		t.bell.Store(bell)
		h, r := t.head.Load(), t.returned.Load()
		switch {
		case h == head && r == back && word.Load() == w:
			futexSleep((*byte)(unsafe.Pointer(word)), uint32(w), min(left, slice))
			continue
		case h < head || h > t.next:
			t.stuck, t.stuckAt = true, h // nonsense: not to be waited on
			return false
		}
		head, back, moved = h, r, now
	}
}

// unread returns the bytes written to the connection the ring was offered
// on that the peer has not read yet (SIOCOUTQ), and false when the
// connection is closed or the peer has closed its end (a dead peer).
// Without a connection it is always 0, true.
func (t *Tx) unread() (int, bool) {
	if t.sock == nil {
		return 0, true
	}
	q, open := 0, false
	err := t.sock.Control(func(fd uintptr) {
		q, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		p := []unix.PollFd{{Fd: int32(fd)}} // hang-ups and errors are always reported
		n, err := unix.Poll(p, 0)
		for err == unix.EINTR { // the runtime's preemption signal, not the peer
			n, err = unix.Poll(p, 0)
		}
		open = err == nil && (n == 0 || p[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) == 0)
	})
	return q, err == nil && open
}

// ring wakes the producer if it waits (see Wait): the bell is up, and
// says which word it sleeps on.
func (r *Rx) ring() {
	switch r.bell.Swap(0) {
	case bellHead:
		futexWakeOne(&r.hdr[0])
	case bellReturned:
		futexWakeOne(&r.hdr[returnedOffset])
	}
}

// futexSleep sleeps while the 32-bit word at p holds val, for at most d
// or until woken. Whatever ends it (a wake, a change seen by the kernel,
// the timeout, a signal), the caller looks again.
func futexSleep(p *byte, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(p)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWakeOne wakes one sleeper on the word at p.
func futexWakeOne(p *byte) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(p)), futexWake, 1, 0, 0, 0)
}
