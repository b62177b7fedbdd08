package shm

import (
	"io"
	"runtime"
	"testing"
	"time"
)

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); runtime.Gosched() {
		if time.Now().After(end) {
			t.Fatal(what)
		}
	}
}

// setWait sets the wait's slice and stall for one test.
func setWait(t *testing.T, sl, st time.Duration) {
	old, olds := slice, stall
	slice, stall = sl, st
	t.Cleanup(func() { slice, stall = old, olds })
}

// full fills a ring of 64 KiB with two payloads of 24 KiB, returning
// their positions: a third does not fit until the first is released.
func full(t *testing.T, tx *Tx) [2]uint64 {
	t.Helper()
	var pos [2]uint64
	for i := range pos {
		p, ok := tx.Put(make([]byte, 24<<10))
		if !ok {
			t.Fatal("an empty ring did not take 24 KiB")
		}
		pos[i] = p
	}
	if _, ok := tx.Put(make([]byte, 24<<10)); ok {
		t.Fatal("a full ring took 24 KiB more")
	}
	return pos
}

// TestWaitWokenByRelease: a producer sleeping on a full ring is woken by
// the consumer's release through its own mapping of the header (another
// address: the futex must be a shared one). Slices and the stall are made
// long, so only the wake can end the wait in time.
func TestWaitWokenByRelease(t *testing.T) {
	setWait(t, time.Minute, time.Minute)
	tx, rx, _ := offered(t, 64<<10)
	pos := full(t, tx)
	done := make(chan bool, 1)
	go func() { done <- tx.Wait(24<<10, time.Now().Add(time.Minute)) }()
	eventually(t, 10*time.Second, func() bool { return rx.bell.Load() != 0 }, "the producer never rang the bell")
	if _, err := rx.View(pos[0], 24<<10); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rx.Release()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("the wait ended without room after a release")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the release did not wake the producer")
	}
	t.Logf("woken %v after the release", time.Since(start))
	if rx.bell.Load() != 0 {
		t.Fatal("the bell is still up after the wait")
	}
	if _, ok := tx.Put(make([]byte, 24<<10)); !ok {
		t.Fatal("no room after a wait that found some")
	}
}

// TestWaitGivesUp: with nothing released a wait ends after the stall, or
// at its deadline; a second wait at the same
// release position gives up at once, and one after a release waits again.
func TestWaitGivesUp(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	pos := full(t, tx)
	start := time.Now()
	if tx.Wait(24<<10, time.Time{}) {
		t.Fatal("room found with nothing released")
	}
	if d := time.Since(start); d < Stall || d > Stall+time.Second {
		t.Fatalf("gave up after %v, want about %v", d, Stall)
	}
	if tx.Waitable(24<<10) || tx.Wait(24<<10, time.Time{}) {
		t.Fatal("waited again on a consumer that released nothing since")
	}
	if tx.Waitable(64<<10 + 1) {
		t.Fatal("waitable for a payload larger than the ring")
	}
	// A release of too little: waitable again, and the wait ends at its
	// deadline.
	setWait(t, Slice, time.Minute)
	rx.View(pos[0], 24<<10)
	rx.Release()
	if _, ok := tx.Put(make([]byte, 48<<10)); ok {
		t.Fatal("48 KiB fit in 40")
	}
	if !tx.Waitable(48 << 10) {
		t.Fatal("not waitable after a release")
	}
	start = time.Now()
	if tx.Wait(48<<10, time.Now().Add(20*time.Millisecond)) {
		t.Fatal("room found with nothing released")
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > time.Second {
		t.Fatalf("gave up %v after a 20 ms deadline", d)
	}
	rx.View(pos[1], 24<<10)
	rx.Release()
	if tx.Wait(64<<10+1, time.Time{}) {
		t.Fatal("waited for a payload larger than the ring")
	}
}

// TestWaitEndsWithConnection: a wait ends within a slice once the
// connection the ring was offered on is closed, by the producer or by the
// consumer (a consumer that dies).
func TestWaitEndsWithConnection(t *testing.T) {
	setWait(t, Slice, time.Minute)
	for _, side := range []string{"producer", "consumer"} {
		tx, _, r, c := offeredOn(t, 64<<10)
		full(t, tx)
		done := make(chan bool, 1)
		go func() { done <- tx.Wait(24<<10, time.Now().Add(time.Minute)) }()
		if side == "producer" {
			c.Close()
		} else {
			r.c.Close()
		}
		select {
		case ok := <-done:
			if ok {
				t.Fatalf("%s closed: room found with nothing released", side)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the wait went on after the %s closed the connection", side)
		}
	}
}

// TestWaitWhileConsumerReads: a consumer that releases nothing but reads
// the connection (frames written before those referring to the ring) is
// making progress: the producer waits on past the stall, and the release
// that follows finds it waiting. The consumer reads every 100 ms against a
// stall of 400, a margin for a loaded machine. Under load this test also
// caught the runtime's preemption signal interrupting Wait's poll of the
// connection (EINTR), once taken for a closed connection.
func TestWaitWhileConsumerReads(t *testing.T) {
	const frames, frame = 10, 10 << 10
	setWait(t, Slice, 400*time.Millisecond)
	tx, rx, r, c := offeredOn(t, 64<<10)
	pos := full(t, tx)
	for range frames { // one write each, so each read frees its own
		if _, err := c.Write(make([]byte, frame)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan bool, 1)
	start := time.Now()
	go func() { done <- tx.Wait(24<<10, time.Time{}) }()
	buf := make([]byte, frame)
	for range frames {
		time.Sleep(100 * time.Millisecond) // the consumer's work
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
	}
	rx.View(pos[0], 24<<10)
	rx.Release()
	if !<-done {
		t.Fatalf("gave up after %v of a consumer reading its connection", time.Since(start))
	}
	if d := time.Since(start); d < 2*stall {
		t.Fatalf("the wait took %v, less than the consumer's reads", d)
	}
}

// TestWaitSurvivesScribbles: a consumer that writes nonsense into the
// header (a release position ahead of the producer, or going back, the
// bell and the futex word churned, wakes for nothing) neither hangs nor
// crashes a waiting producer: it gives up at once for a position that
// makes no sense, at worst after the stall.
func TestWaitSurvivesScribbles(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	full(t, tx)
	rx.head.Store(1 << 40) // ahead of anything put
	start := time.Now()
	if tx.Wait(24<<10, time.Time{}) || time.Since(start) > time.Second {
		t.Fatalf("a release position ahead of the producer: waited %v", time.Since(start))
	}
	// A scribbler churning the header while the producer waits.
	rx.head.Store(1)
	tx.stuck = false
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rx.head.Store(i % 3) // 0 and 1 lie behind 1 or at it: nonsense or nothing
			rx.bell.Store(uint32(i))
			futexWakeOne(&rx.hdr[0])
		}
	}()
	start = time.Now()
	ok := tx.Wait(24<<10, time.Now().Add(5*time.Second))
	close(stop)
	<-done
	if ok {
		t.Fatal("room found in a full ring")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the scribbled wait took %v", d)
	}
}

// TestReleaseWithoutWaiter: a release with no producer waiting leaves the
// bell alone.
func TestReleaseWithoutWaiter(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	pos, _ := tx.Put(make([]byte, 1000))
	rx.View(pos, 1000)
	rx.Release()
	if rx.bell.Load() != 0 || tx.head.Load() != pos+1000 {
		t.Fatalf("bell %d, head %d after a plain release", rx.bell.Load(), tx.head.Load())
	}
}
