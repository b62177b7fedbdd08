package comm

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
)

// These tests cover the doorbell (shm.Tx.Wait): a producer that would
// block on its socket anyway waits for room in its full ring instead of
// sending inline.

// slowConsume reads data frames from rc until want bytes have come,
// checking them against want, and releases each shared one only after a
// pause, a consumer slower than its producer. It returns the bytes that
// came through the ring.
func slowConsume(t *testing.T, rc *conn, want []byte, pause time.Duration) int {
	t.Helper()
	got, shared := 0, 0
	for got < len(want) {
		f, err := rc.next()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		_, _, off, data, err := proto.DecodeData(f.Payload)
		if err != nil || off != int64(got) {
			t.Fatalf("data frame at %d (%v), want %d", off, err, got)
		}
		if f.Flags&proto.FlagShared != 0 {
			if data, err = rc.shared(data); err != nil {
				t.Fatal(err)
			}
			shared += len(data)
		}
		if !bytes.Equal(data, want[got:got+len(data)]) {
			t.Fatalf("bytes at %d differ", got)
		}
		got += len(data)
		time.Sleep(pause) // the consumer's work: it is the bottleneck
		if rc.rx != nil {
			rc.rx.Release()
		}
	}
	return shared
}

// TestCacheWritesWaitForRing: a connection to a server (waitRoom) whose
// consumer drains slowly puts all its large pieces through its ring once
// it has one, waiting for room; without waiting (a direct connection)
// the pieces that find the ring full go inline.
func TestCacheWritesWaitForRing(t *testing.T) {
	const total, call, pieceSize = 16 << 20, 1 << 20, 256 << 10
	payload := bytesOf(3, total)
	for _, wait := range []bool{true, false} {
		wc, rc := unixConns(t)
		wc.ringSize, wc.waitRoom = 1<<20, wait
		errc := make(chan error, 1)
		go func() {
			for off := 0; off < total; off += call {
				var pieces []piece
				for p := off; p < off+call; p += pieceSize {
					pieces = append(pieces, piece{off: int64(p), data: payload[p : p+pieceSize]})
				}
				if err := wc.writeData(proto.TWrite, 0, "bell", 1, pieces, nil, time.Now().Add(20*time.Second)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		shared := slowConsume(t, rc, payload, 300*time.Microsecond)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		wc.wmu.Lock()
		ring, missed := wc.ringBytes, wc.ringMissed
		wc.wmu.Unlock()
		t.Logf("waiting %v: %d bytes through the ring, %d inline for want of room (%d read shared)", wait, ring, missed, shared)
		if ring != int64(shared) {
			t.Fatalf("%d bytes put in the ring, %d read from it", ring, shared)
		}
		if afterRing := int64(total - shm.After); wait && missed > afterRing/20 {
			t.Fatalf("%d of %d bytes inline with a ring to wait for", missed, afterRing)
		}
		if !wait && missed == 0 {
			t.Fatal("no piece found the ring full: the consumer is not slow, the test proves nothing")
		}
	}
}

// TestSlowReaderGetsServerRing: the server's read replies to a reader
// that reads slowly wait for room in the server's ring instead of going
// inline: nearly every byte after the first shm.After comes through it.
func TestSlowReaderGetsServerRing(t *testing.T) {
	needHost(t)
	const total = 24 << 20
	sw, sr, _, _ := pipeline(t, nil)
	ctx := testCtx(t)
	payload := bytesOf(5, total)
	publish(t, sw, "slow", payload)
	r := mustAttach(t, sr, "slow")
	defer r.Close()
	got := make([]byte, 0, total)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.ReadContext(ctx, buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Microsecond) // the reader's work: it is the bottleneck
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes, differing from the %d written", len(got), total)
	}
	t.Logf("%d of %d bytes through the server's ring", r.ringRead, total)
	if afterRing := int64(total - 2*shm.After); r.ringRead < afterRing-afterRing/20 {
		t.Fatalf("only %d of %d bytes through the server's ring", r.ringRead, total)
	}
}
