// Package spin reads sockets by busy-polling them before parking.
//
// Parking a goroutine in the runtime's network poller and waking it costs
// tens of microseconds per message (more in a virtual machine, where
// waking an idle vCPU goes through the hypervisor); a read that polls the
// socket (non-blocking read in a loop through syscall.RawConn) gets a
// reply that arrives within the budget at once. Spinning only pays while
// the peer runs on another core: on an oversubscribed machine the spinner
// takes the core the peer needs. So the spinner yields the core between
// polls (sched_yield, which returns at once when nothing else is
// runnable), and spinning backs off like an adaptive mutex: after a spin
// that found nothing, the next reads park at once, twice as many after
// each further miss (up to maxSkip), and one hit resets it.
package spin

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// Reader reads a socket, spinning for up to its budget before each
// ordinary (parking) read. Errors, end of stream and deadlines are left to
// the ordinary read, so they surface exactly as from net.Conn. A Reader is
// used by one goroutine at a time.
type Reader struct {
	nc     io.Reader // the ordinary read: the connection, or a Source over it
	raw    func(fd int, p []byte) (int, error)
	rc     syscall.RawConn
	budget time.Duration
	misses int // spins in a row that found nothing
	skip   int // reads left that do not spin
}

// maxSkip bounds how many reads in a row park without spinning.
const maxSkip = 256

// New returns a spinning reader of nc, or nc itself when budget is not
// positive, GOMAXPROCS is 1 (a spinner would hold the only P), or nc is
// not a socket.
func New(nc net.Conn, budget time.Duration) io.Reader {
	return NewSource(nc, nil, budget)
}

// Source is a way of reading a socket other than read(2): recvmsg(2), to
// keep the descriptors sent with the bytes. ReadFd is the non-blocking
// read of the descriptor (EAGAIN when there is nothing), Read the
// ordinary one.
type Source interface {
	io.Reader
	ReadFd(fd int, p []byte) (int, error)
}

// NewSource is New reading through src when it is not nil; without
// spinning it returns src itself.
func NewSource(nc net.Conn, src Source, budget time.Duration) io.Reader {
	var plain io.Reader = nc
	raw := rawio.Read
	if src != nil {
		plain, raw = src, src.ReadFd
	}
	sc, ok := nc.(syscall.Conn)
	if !ok || budget <= 0 || runtime.GOMAXPROCS(0) == 1 {
		return plain
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return plain
	}
	return &Reader{nc: plain, raw: raw, rc: rc, budget: budget}
}

func (s *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.skip > 0 {
		s.skip--
		return s.nc.Read(p)
	}
	n, missed := s.spin(p)
	if missed {
		s.misses++
		s.skip = min(1<<min(s.misses-1, 30), maxSkip)
	} else if n > 0 {
		s.misses = 0
	}
	if n > 0 {
		return n, nil
	}
	return s.nc.Read(p)
}

// spin polls the socket until it reads something (n > 0), the budget is
// spent, or the read fails or ends (left to the ordinary read). missed
// reports a spin that lasted past the budget: one that found nothing, or
// that found bytes only after the process lost its core meanwhile.
func (s *Reader) spin(p []byte) (n int, missed bool) {
	var until time.Time
	s.rc.Read(func(fd uintptr) bool {
		for {
			m, err := s.raw(int(fd), p)
			switch {
			case m > 0:
				n = m
				missed = !until.IsZero() && time.Now().After(until)
				return true
			case err == syscall.EINTR:
				continue
			case err != syscall.EAGAIN:
				return true // end of stream or an error
			}
			// Give the core to whatever else is runnable on it (the
			// peer, on a loaded machine); alone, this returns at once.
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			now := time.Now()
			if until.IsZero() {
				until = now.Add(s.budget)
			} else if now.After(until) {
				missed = true
				return true
			}
		}
	})
	return n, missed
}
