package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

// newTestSession returns a server (segments of 4 KiB, nothing served) and
// a session on one end of a pipe, the other end being the peer.
func newTestSession(t *testing.T) (*Server, *session, net.Conn) {
	t.Helper()
	// No prefilled buffers: the tests count what goes to the free list.
	srv, err := New(Config{SegmentSize: cache.MinSegmentSize, MemoryBytes: 1 << 20, Local: "off", Prefill: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return srv, newSession(srv, a, 1), b
}

// storeSealed writes n bytes of seed's pattern to k and seals it.
func storeSealed(t *testing.T, st *cache.Store, k cache.Key, seed byte, n int) []byte {
	t.Helper()
	src := bytes.Repeat([]byte{seed, seed + 1, seed + 2}, n/3+1)[:n]
	if _, err := st.Append(k, 0, src); err != nil {
		t.Fatal(err)
	}
	if err := st.Seal(k, int64(n)); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestSegmentFrameReleasedAfterWrite sends a segment without a copy,
// deletes its stream and reuses the memory while the frame is being
// written: the peer still gets the original bytes, and the segment's
// buffer goes back to the store only once the write is done.
func TestSegmentFrameReleasedAfterWrite(t *testing.T) {
	const seg = cache.MinSegmentSize
	srv, ss, peer := newTestSession(t)
	st := srv.store
	k1, k2 := cache.Key{Space: "s", Instance: 1}, cache.Key{Space: "s", Instance: 2}
	src := storeSealed(t, st, k1, 1, 2*seg)
	body, release, err := st.View(k1, 100, maxDataFrame)
	if err != nil || !bytes.Equal(body, src[100:seg]) || release == nil {
		t.Fatalf("View = %d bytes, release %v, %v", len(body), release != nil, err)
	}
	var released atomic.Int32
	stop := make(chan struct{})
	go func() { ss.writeLoop(); close(stop) }()
	defer func() { close(ss.stop); <-stop }()
	ss.data <- outFrame{hdr: []byte("H"), body: body, release: func() { released.Add(1); release() }}

	got := make([]byte, 1+len(body))
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, got[:10]); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(k1); err != nil { // the other segment's buffer is freed now
		t.Fatal(err)
	}
	storeSealed(t, st, k2, 7, 3*seg) // and reused
	if s := st.Stats(); s.Recycled != 1 || released.Load() != 0 {
		t.Fatalf("Recycled %d, released %d: want 1, 0 while the frame is being written", s.Recycled, released.Load())
	}
	if _, err := io.ReadFull(peer, got[10:]); err != nil {
		t.Fatal(err)
	}
	if got[0] != 'H' || !bytes.Equal(got[1:], src[100:seg]) {
		t.Fatal("the peer got changed bytes")
	}
	deadline := time.Now().Add(10 * time.Second)
	for released.Load() == 0 || st.Stats().FreeBytes != seg {
		if time.Now().After(deadline) {
			t.Fatalf("released %d, FreeBytes %d after the write", released.Load(), st.Stats().FreeBytes)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// TestSegmentFrameReleasedWhenDropped checks that a frame that is never
// written (the stream ends while the data queue is full) gives its segment
// back too.
func TestSegmentFrameReleasedWhenDropped(t *testing.T) {
	srv, ss, _ := newTestSession(t)
	k := cache.Key{Space: "s", Instance: 1}
	storeSealed(t, srv.store, k, 1, cache.MinSegmentSize)
	for range cap(ss.data) {
		ss.data <- outFrame{hdr: []byte("H")}
	}
	body, release, err := srv.store.View(k, 0, maxDataFrame)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ss.sendData(ctx, outFrame{body: body, release: func() { released.Add(1); release() }}) {
		t.Fatal("sendData queued into a full queue")
	}
	if released.Load() != 1 {
		t.Fatalf("released %d times, want 1", released.Load())
	}
	if err := srv.store.Delete(k); err != nil {
		t.Fatal(err)
	}
	if s := srv.store.Stats(); s.FreeBytes != cache.MinSegmentSize {
		t.Fatalf("FreeBytes %d after Delete: the dropped frame kept its segment pinned", s.FreeBytes)
	}
}
