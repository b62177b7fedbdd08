package shm

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/unixtest"
)

// offered sets up a ring of size bytes from a to b and returns both sides
// and b's reader, past the offer's frame.
func offered(t *testing.T, size int) (*Tx, *Rx, *Reader) {
	t.Helper()
	tx, rx, r, _ := offeredOn(t, size)
	return tx, rx, r
}

// offeredOn is offered, also returning the producer's end of the socket.
func offeredOn(t *testing.T, size int) (*Tx, *Rx, *Reader, *net.UnixConn) {
	t.Helper()
	tx, a, _, r := offering(t, size)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "ring" {
		t.Fatalf("offer frame %q, %v", buf, err)
	}
	hfd, dfd, ok := r.TakeRing()
	if !ok {
		t.Fatal("no descriptors came with the offer")
	}
	rx, err := Map(hfd, dfd, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	return tx, rx, r, a
}

// offering offers a ring of size bytes with the frame "ring" from a to b
// of a socket pair, and returns b's Reader, the frame not yet read.
func offering(t *testing.T, size int) (tx *Tx, a, b *net.UnixConn, r *Reader) {
	t.Helper()
	a, b = unixtest.Pair(t)
	tx, err := NewTx(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	if err := tx.Offer(a, []byte("ring")); err != nil {
		t.Fatal(err)
	}
	r = NewReader(b)
	t.Cleanup(r.Close)
	return tx, a, b, r
}

func TestRingCarriesBytesInOrderAndWraps(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	var next byte
	var prev []byte // the consumer lags one payload behind, so the ring never empties and goes round
	var prevPos uint64
	for round := range 40 { // 40 payloads of 5-20 KiB go round a 64 KiB ring many times
		p := make([]byte, 5<<10+round%30*512)
		for i := range p {
			p[i] = next
			next++
		}
		pos, ok := tx.Put(p)
		if !ok {
			t.Fatalf("round %d: ring full with everything but one payload released", round)
		}
		if prev != nil {
			v, err := rx.View(prevPos, len(prev))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v, prev) {
				t.Fatalf("round %d: bytes differ", round)
			}
			rx.Release()
		}
		prev, prevPos = p, pos
	}
	if tx.next < 4*64<<10 {
		t.Fatalf("the payloads went %d bytes into a 64 KiB ring, want several rounds", tx.next)
	}
}

func TestRingStartsOverOnceEmpty(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	p := make([]byte, 20<<10)
	a, _ := tx.Put(p)
	b, _ := tx.Put(p)
	if a != 0 || b != 20<<10 {
		t.Fatalf("puts at %d and %d, want 0 and 20480", a, b)
	}
	rx.View(a, len(p))
	rx.Release()
	if c, _ := tx.Put(p); c != 40<<10 {
		t.Fatalf("with bytes still held, the next put went to %d, want 40960", c)
	}
	rx.View(b, len(p))
	rx.View(40<<10, len(p))
	rx.Release()
	// Everything released: the next payload goes to the ring's first byte
	// (the next round's start), and the ring is all room again.
	d, ok := tx.Put(p)
	if !ok || d != 64<<10 {
		t.Fatalf("once empty, the next put went to %d (%v), want 65536", d, ok)
	}
	if !tx.Fits(44<<10, 44<<10) {
		t.Fatal("the rest of the ring does not fit after starting over")
	}
	if _, ok := tx.Put(make([]byte, 44<<10)); !ok {
		t.Fatal("the rest of the ring did not take 44 KiB")
	}
	if _, ok := tx.Put(make([]byte, 1)); ok {
		t.Fatal("a full ring took another byte")
	}
	if v, err := rx.View(d, len(p)); err != nil || len(v) != len(p) {
		t.Fatalf("the consumer cannot view the payload put after starting over: %v", err)
	}
}

func TestRingFullUntilReleased(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	p := make([]byte, 24<<10)
	var refs []uint64
	for {
		pos, ok := tx.Put(p)
		if !ok {
			break
		}
		refs = append(refs, pos)
	}
	if len(refs) != 2 {
		t.Fatalf("%d payloads of 24 KiB fit in 64 KiB, want 2", len(refs))
	}
	if _, err := rx.View(refs[0], len(p)); err != nil {
		t.Fatal(err)
	}
	rx.Release()
	// 16 KiB are left at the end: the next payload skips them.
	pos, ok := tx.Put(p)
	if !ok || pos != 64<<10 {
		t.Fatalf("after a release: put at %d, %v; want at 65536", pos, ok)
	}
	if _, ok := tx.Put(make([]byte, 64<<10+1)); ok {
		t.Fatal("a payload larger than the ring was put")
	}
	if _, ok := tx.Put(nil); ok {
		t.Fatal("an empty payload was put")
	}
}

func TestProducerIgnoresNonsenseRelease(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	rx.head.Store(1 << 40) // a release past anything put
	if _, ok := tx.Put(make([]byte, 1024)); ok {
		t.Fatal("put trusted a release position ahead of the producer")
	}
}

func TestViewRejectsBadReferences(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	pos, _ := tx.Put(make([]byte, 1000))
	for _, c := range []struct {
		pos uint64
		n   int
	}{
		{pos, 0},            // empty
		{pos, 64<<10 + 1},   // larger than the ring
		{60 << 10, 8 << 10}, // wraps
	} {
		if _, err := rx.View(c.pos, c.n); !errors.Is(err, ErrRef) {
			t.Errorf("View(%d, %d) = %v, want ErrRef", c.pos, c.n, err)
		}
	}
	if _, err := rx.View(pos, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.View(pos, 1000); !errors.Is(err, ErrRef) {
		t.Errorf("viewing the same bytes twice = %v, want ErrRef", err)
	}
}

func TestMapRejectsWhatIsNotASealedRing(t *testing.T) {
	good := func() (int, int) {
		hfd, _, err := newMemfd("h", headerSize, 0)
		if err != nil {
			t.Fatal(err)
		}
		dfd, _, err := newMemfd("d", 64<<10, unix.F_SEAL_FUTURE_WRITE)
		if err != nil {
			t.Fatal(err)
		}
		return hfd, dfd
	}
	unsealed := func(size int) int {
		fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		unix.Ftruncate(fd, int64(size))
		return fd
	}
	pipe := func() int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[1])
		return p[0]
	}
	for _, c := range []struct {
		name string
		fds  func() (int, int)
		max  int
	}{
		{"unsealed data", func() (int, int) { h, d := good(); unix.Close(d); return h, unsealed(64 << 10) }, 1 << 20},
		{"unsealed header", func() (int, int) { h, d := good(); unix.Close(h); return unsealed(headerSize), d }, 1 << 20},
		{"pipe", func() (int, int) { h, d := good(); unix.Close(d); return h, pipe() }, 1 << 20},
		{"data over max", good, 32 << 10},
		{"header of the wrong size", func() (int, int) { _, d := good(); d2, _ := unix.Dup(d); return d, d2 }, 1 << 20},
	} {
		h, d := c.fds()
		if _, err := Map(h, d, c.max); !errors.Is(err, ErrRing) {
			t.Errorf("%s: %v, want ErrRing", c.name, err)
		}
	}
}

// TestConsumerCannotWriteData: the data area is sealed against writable
// mappings other than the producer's, so a consumer (which might keep its
// mapping while the area serves another ring) cannot spoil it.
func TestConsumerCannotWriteData(t *testing.T) {
	tx, err := NewTx(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := unix.Mmap(tx.area.fd, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		t.Fatal("a second writable mapping of the data area was allowed")
	}
	if _, err := unix.Pwrite(tx.area.fd, []byte("x"), 0); err == nil {
		t.Fatal("a write to the data area's descriptor was allowed")
	}
}

// TestAreaPooledOnlyWhenReleased: a ring whose consumer released all it
// was given leaves its data area for the next ring; one with bytes still
// unreleased does not (its consumer may still read them).
func TestAreaPooledOnlyWhenReleased(t *testing.T) {
	const size = 48 << 10 // a size no other test uses, so the pool is ours
	tx, rx, _ := offered(t, size)
	pos, _ := tx.Put(make([]byte, 1000))
	rx.View(pos, 1000)
	rx.Release()
	a := tx.area
	tx.Close()
	tx2, err := NewTx(size)
	if err != nil {
		t.Fatal(err)
	}
	if tx2.area != a {
		t.Fatal("a released ring's area was not reused")
	}
	tx2.Put(make([]byte, 1000)) // never released
	tx2.Close()
	tx3, err := NewTx(size)
	if err != nil {
		t.Fatal(err)
	}
	defer tx3.Close()
	if tx3.area == a {
		t.Fatal("an area with unreleased bytes was reused")
	}
}

func TestReaderRefusesDescriptorFlood(t *testing.T) {
	a, b := unixtest.Pair(t)
	r := NewReader(b)
	defer r.Close()
	for range maxPending + 1 {
		tx, err := NewTx(4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Offer(a, []byte{1}); err != nil {
			t.Fatal(err)
		}
		tx.Close()
	}
	a.Close()
	_, err := io.ReadAll(r)
	if !errors.Is(err, ErrDescriptors) {
		t.Fatalf("reading past %d untaken descriptors: %v, want ErrDescriptors", maxPending, err)
	}
}

// TestBudget: a process's live rings share Budget; closing one makes room.
func TestBudget(t *testing.T) {
	big, err := NewTx(Budget - int(live.Load()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTx(4096); !errors.Is(err, ErrBudget) {
		t.Fatalf("a ring past the budget: %v, want ErrBudget", err)
	}
	big.Close()
	small, err := NewTx(4096)
	if err != nil {
		t.Fatalf("after a ring closed: %v", err)
	}
	small.Close()
}

// TestLazySwitchesBeforeAnOffer: a Lazy reads plainly (each read at most
// switchAfter bytes) until it has read switchAfter bytes, and keeps the
// descriptors of an offer made after After bytes; an offer made earlier
// loses them, which the protocol forbids.
func TestLazySwitchesBeforeAnOffer(t *testing.T) {
	for _, c := range []struct {
		name  string
		lead  int
		keeps bool
	}{{"offer after After bytes", After, true}, {"offer at once", 0, false}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := unixtest.Pair(t)
			l := NewLazy(b)
			defer l.Close()
			go func() {
				a.Write(make([]byte, c.lead))
				tx, err := NewTx(4096)
				if err != nil {
					return
				}
				tx.Offer(a, []byte("ring"))
				tx.Close()
			}()
			buf := make([]byte, 2*After)
			got := 0
			for got < c.lead+4 {
				n, err := l.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if l.fds == nil && n > switchAfter {
					t.Fatalf("a plain read of %d bytes, more than %d", n, switchAfter)
				}
				got += n
			}
			if _, _, ok := l.TakeRing(); ok != c.keeps {
				t.Fatalf("descriptors kept: %v, want %v", ok, c.keeps)
			}
		})
	}
}

// TestFitsAgreesWithPut: Fits says yes exactly when Put would take every
// piece, and never for pieces below MinPayload.
func TestFitsAgreesWithPut(t *testing.T) {
	tx, rx, _ := offered(t, 256<<10)
	if !tx.Fits(192<<10, 64<<10) {
		t.Fatal("an empty ring does not fit 192 KiB in 64 KiB pieces")
	}
	if tx.Fits(100<<10+1, 50<<10) {
		t.Fatal("a last piece of 1 byte (below MinPayload) fits")
	}
	if tx.Fits(0, 64<<10) {
		t.Fatal("nothing fits")
	}
	for range 3 {
		if _, ok := tx.Put(make([]byte, 64<<10)); !ok {
			t.Fatal("put failed in an empty ring")
		}
	}
	if tx.Fits(128<<10, 64<<10) {
		t.Fatal("128 KiB fit in the 64 KiB left")
	}
	if !tx.Fits(64<<10, 64<<10) {
		t.Fatal("64 KiB did not fit in the 64 KiB left")
	}
	if _, ok := tx.Put(make([]byte, 1)); !ok {
		t.Fatal("a byte did not go in")
	}
	if tx.Fits(64<<10, 64<<10) {
		t.Fatal("64 KiB fit in the 64 KiB - 1 left")
	}
	pos, _ := tx.Put(make([]byte, 32<<10))
	rx.View(0, 64<<10) // the consumer reads the first payload and releases it
	rx.Release()
	if !tx.Fits(64<<10, 64<<10) {
		t.Fatalf("64 KiB did not fit once 64 KiB were released (next put at %d)", pos+32<<10)
	}
}

func TestHeldUntilReleased(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	a, b := bytesN(1, 20<<10), bytesN(2, 20<<10)
	pa, _ := tx.Put(a)
	pb, _ := tx.Put(b)
	if v, ok := tx.Held(pb, len(b)); !ok || !bytes.Equal(v, b) {
		t.Fatal("a payload the consumer has not seen is not held")
	}
	if _, ok := tx.Held(pb, len(b)+1); ok {
		t.Fatal("held reaches past what was put")
	}
	rx.View(pa, len(a))
	rx.Release()
	if _, ok := tx.Held(pa, len(a)); ok {
		t.Fatal("a released payload is still held")
	}
	if v, ok := tx.Held(pb, len(b)); !ok || !bytes.Equal(v, b) {
		t.Fatal("the payload after a released one is not held")
	}
}

func bytesN(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

// TestDescriptorsCloseOnExec: descriptors that come with a ring's offer
// are close-on-exec whichever way the connection is read, with Read or
// with ReadFd (a spinning reader's), so that a process starting another
// never hands it the rings.
func TestDescriptorsCloseOnExec(t *testing.T) {
	for _, viaFd := range []bool{false, true} {
		_, _, b, r := offering(t, 64<<10)
		buf := make([]byte, 4)
		var n int
		var err error
		if viaFd {
			sc, err := b.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			sc.Read(func(fd uintptr) bool {
				n, err = r.ReadFd(int(fd), buf)
				return err != unix.EAGAIN
			})
		} else {
			n, err = io.ReadFull(r, buf)
		}
		if err != nil || string(buf[:n]) != "ring" {
			t.Fatalf("read via fd %v: %q, %v", viaFd, buf[:n], err)
		}
		hfd, dfd, ok := r.TakeRing()
		if !ok {
			t.Fatalf("read via fd %v: no descriptors came with the offer", viaFd)
		}
		for _, fd := range []int{hfd, dfd} {
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("read via fd %v: descriptor %d not close-on-exec (%#x, %v)", viaFd, fd, flags, err)
			}
			unix.Close(fd)
		}
	}
}
