package comm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/internal/local"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/internal/unixtest"
	"github.com/pispace/pispace/comm/server"
	"github.com/pispace/pispace/comm/wire"
)

// These tests cover the shared-memory ring a writer's Unix connection to
// its server uses for large writes (package shm).

// writeThenRead writes payload in writes of chunk bytes on a channel of
// sw with no reader, closes it, reads it back through sr from the cache,
// and returns both ends.
func writeThenRead(t *testing.T, sw, sr *Space, name string, payload []byte, chunk int) (*Writer, *Reader) {
	t.Helper()
	ctx := testCtx(t)
	w, err := sw.Create(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for p := payload; len(p) > 0; {
		n := min(chunk, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := sr.Attach(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes back, differing from the %d written", len(got), len(payload))
	}
	return w, r
}

// TestWriterUsesSharedRing: a writer's large writes to a server of its
// host go through a shared ring, when the server has no arena to take
// them in place (see TestWritesGoStraightIntoSegments), and the cache
// holds exactly the bytes; a reader of the cache gets them through the
// server's ring.
// With a ring smaller than a write's first piece (400 KiB writes are sent
// as 256 and 144 KiB; the ring holds 200), that piece goes inline, never
// waiting for room it cannot have, and the other through the ring; the
// bytes are the same.
func TestWriterUsesSharedRing(t *testing.T) {
	needHost(t)
	for _, c := range []struct {
		name  string
		ring  int
		write int
	}{{"default", 0, 200 << 10}, {"small", 200 << 10, 400 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			sw, sr, _, _ := pipelineOn(t, server.Config{Lend: -1}, func(cfg *Config) { cfg.SharedRing = c.ring })
			w, r := writeThenRead(t, sw, sr, "ring", bytesOf(7, 12<<20+333), c.write)
			if !isUnix(w.c) {
				t.Fatalf("writer's cache connection is %T, want a Unix socket", w.c.c)
			}
			if w.c.ringBytes == 0 {
				t.Fatal("no byte went through the shared ring")
			}
			if c.ring > 0 && w.c.ringMissed == 0 {
				t.Fatal("a ring smaller than a write's pieces took them all")
			}
			if r.ringRead == 0 {
				t.Fatal("the reader got no byte through the server's ring")
			}
			t.Logf("%d bytes through the writer's ring, %d inline for want of room; %d read through the server's",
				w.c.ringBytes, w.c.ringMissed, r.ringRead)
		})
	}
}

// TestSharedRingOff: with SharedRing negative the writer sends every
// byte through the socket.
func TestSharedRingOff(t *testing.T) {
	needHost(t)
	sw, sr, _, _ := pipeline(t, func(cfg *Config) { cfg.SharedRing = -1 })
	w, _ := writeThenRead(t, sw, sr, "off", bytesOf(8, 2<<20), 256<<10)
	if w.c.ringBytes != 0 || w.c.ringMissed != 0 {
		t.Fatalf("%d bytes through a ring that is off", w.c.ringBytes)
	}
}

// TestDirectPathUsesSharedRing: a reader of this host on the direct path
// gets a long stream's bytes through the writer's ring, in order. The
// queue is large enough that the writer never drops the reader.
func TestDirectPathUsesSharedRing(t *testing.T) {
	needHost(t)
	ctx := testCtx(t)
	sw, sr, _, _ := pipeline(t, func(c *Config) { c.SinkQueue = 64 << 20 })
	w, r := openPair(t, sw, sr, "direct-ring")
	defer r.Close()
	payload := bytesOf(9, 16<<20+777)
	got := make([]byte, len(payload))
	// A first byte read puts the reader on the direct path before the
	// stream starts (a reader subscribing late may be sent to the cache).
	if _, err := w.Write(payload[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, got[:1]); err != nil {
		t.Fatal(err)
	}
	if r.src != srcDirect {
		t.Fatalf("reader on source %d after its first byte, want the direct path", r.src)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, got[1:])
		errc <- err
	}()
	for p := payload[1:]; len(p) > 0; {
		n := min(len(p), 256<<10)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload differs")
	}
	if r.ringDir == 0 {
		t.Fatalf("no byte came through the writer's ring on the direct path (%d through rings in all)", r.ringRead)
	}
	t.Logf("%d of %d bytes through the writer's ring", r.ringDir, len(payload))
}

// unixConns returns both ends of a Unix socket as connections.
func unixConns(t *testing.T) (*conn, *conn) {
	t.Helper()
	a, b := unixtest.Pair(t)
	ca, cb := newConn(a, 8<<20, 0), newConn(b, 8<<20, 0)
	t.Cleanup(func() { ca.close(); cb.close() })
	return ca, cb
}

// TestSinkPastWindowThroughRing: once the direct connection has a ring,
// Write hands a reader bytes beyond the window itself when they go
// through the ring whole (only small frames reach the socket, which
// cannot block), instead of copying them into the sink's queue.
func TestSinkPastWindowThroughRing(t *testing.T) {
	wc, rc := unixConns(t)
	wc.ringSize = 1 << 20
	const window = 64 << 10
	s := newSink(wc, 7, "sp", 1, 8<<20, window, 64<<10, new(sync.Pool), 0)
	s.start(nil)
	t.Cleanup(func() { s.abort(); s.wait() })
	f, err := rc.next()
	if err != nil || f.Type != proto.TOK {
		t.Fatalf("subscribe reply %v %v", f, err)
	}
	commtest.Eventually(t, 5*time.Second, func() bool { _, _, busy := sinkState(s); return !busy }, "sink stays busy")

	var got []byte
	shared := 0
	readTo := func(n int) {
		t.Helper()
		for len(got) < n {
			f, err := rc.next()
			if err != nil {
				t.Fatal(err)
			}
			_, _, off, data, err := proto.DecodeData(f.Payload)
			if err != nil || off != int64(len(got)) {
				t.Fatalf("data frame at %d (%v), want %d", off, err, len(got))
			}
			if f.Flags&proto.FlagShared != 0 {
				if data, err = rc.shared(data); err != nil {
					t.Fatal(err)
				}
				shared++
			}
			got = append(got, data...)
			if rc.rx != nil {
				rc.rx.Release()
			}
		}
	}
	// The first shm.After bytes go through the socket, within the window
	// as the reader reads and acknowledges them; then the ring is set up.
	var want []byte
	for len(want) < shm.After+window {
		p := bytesOf(byte(len(want)), window)
		if !s.offer(int64(len(want)), p) {
			t.Fatal("sink dropped")
		}
		want = append(want, p...)
		readTo(len(want))
		s.ack(int64(len(want)))
	}
	// Unacknowledged, past the window: through the ring.
	before, _, _ := sinkState(s)
	for i := range 4 {
		p := bytesOf(byte(100+i), 100<<10)
		if !s.offer(int64(len(want)), p) {
			t.Fatal("sink dropped")
		}
		want = append(want, p...)
	}
	if in, q, _ := sinkState(s); in-before != 400<<10 || q != 0 {
		t.Fatalf("past the window: %d bytes inline and %d queued, want all %d inline", in-before, q, 400<<10)
	}
	readTo(len(want))
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	if shared == 0 {
		t.Fatal("nothing came through the ring")
	}
}

// fakeServer answers one client on a same-host socket: the hello, an open
// space, an attach (instance 1, no writer), then, to the read request,
// good data frames up to shm.After bytes, a ring, and bad (a data frame
// whose shared reference lies outside the ring). It returns the server's
// endpoints for Config.Servers.
func fakeServer(t *testing.T, bad func(tx *shm.Tx, req uint32, off int64) []byte) string {
	t.Helper()
	l, ep, err := local.Listen("fake")
	if err != nil {
		t.Skip("no host identity:", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go serveFake(nc.(*net.UnixConn), bad)
		}
	}()
	return "127.0.0.1:9," + ep // the TCP endpoint is never dialled: the Unix one is on this host
}

func serveFake(c *net.UnixConn, bad func(tx *shm.Tx, req uint32, off int64) []byte) {
	defer c.Close()
	r := wire.NewReader(c, 1<<20)
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case proto.THello:
			c.Write(proto.AppendMsg(nil, proto.TOK, f.Req, &proto.Welcome{}))
		case proto.TOpenSpace, proto.TCloseSpace:
			c.Write(proto.AppendMsg(nil, proto.TOK, f.Req, nil))
		case proto.TAttach:
			c.Write(proto.AppendMsg(nil, proto.TInfo, f.Req, &proto.Info{Instance: 1, Name: "x"}))
		case proto.TRead:
			var off int64
			chunk := bytes.Repeat([]byte{7}, 64<<10)
			for off < shm.After {
				c.Write(append(proto.AppendDataHeader(nil, proto.TData, f.Req, "fake", 1, off, len(chunk)), chunk...))
				off += int64(len(chunk))
			}
			tx, err := shm.NewTx(1 << 20)
			if err != nil {
				return
			}
			defer tx.Close()
			if tx.Offer(c, proto.AppendMsg(nil, proto.TRing, 0, nil)) != nil {
				return
			}
			c.Write(bad(tx, f.Req, off))
		}
	}
}

// TestClientRefusesBadSharedData: a server whose shared references are
// wrong (outside its ring, or out of order) gets the reader a protocol
// error after the good bytes, never a crash or a hang.
func TestClientRefusesBadSharedData(t *testing.T) {
	for _, c := range []struct {
		name string
		bad  func(tx *shm.Tx, req uint32, off int64) []byte
	}{
		{"past the ring", func(tx *shm.Tx, req uint32, off int64) []byte {
			return proto.AppendSharedData(nil, proto.TData, req, "fake", 1, off, 0, 2<<20)
		}},
		{"out of order", func(tx *shm.Tx, req uint32, off int64) []byte {
			pos, _ := tx.Put(make([]byte, 32<<10))
			f := proto.AppendSharedData(nil, proto.TData, req, "fake", 1, off, pos, 32<<10)
			return append(f, proto.AppendSharedData(nil, proto.TData, req, "fake", 1, off+32<<10, pos, 32<<10)...)
		}},
		{"an offer without descriptors", func(tx *shm.Tx, req uint32, off int64) []byte {
			return proto.AppendMsg(nil, proto.TRing, 0, nil)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := New(Config{Servers: []string{fakeServer(t, c.bad)}, DirectAddr: "off"})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx := testCtx(t)
			s, err := cl.OpenSpace(ctx, "fake")
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Attach(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			n, err := io.Copy(io.Discard, readerCtx{r, ctx})
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("after %d bytes: %v, want ErrProtocol", n, err)
			}
			t.Logf("after %d bytes: %v", n, err)
			if n < shm.After {
				t.Fatalf("only %d of the %d good bytes before the error", n, shm.After)
			}
		})
	}
}

// readerCtx reads r under ctx.
type readerCtx struct {
	r   *Reader
	ctx context.Context
}

func (rc readerCtx) Read(p []byte) (int, error) { return rc.r.ReadContext(rc.ctx, p) }

// TestCacheSenderQueuesRingReferences: on one host, a write large enough
// for the ring is copied into it at once and queued as a reference (no
// copy into a block that writing would copy into the ring again), also
// while the sender batches for a direct reader; the history serves those
// bytes from the ring until the server has read them; queued bytes that
// would go through the ring when written keep later writes out of it
// (the server takes references in the order they were put); and the
// cache gets every byte in order.
func TestCacheSenderQueuesRingReferences(t *testing.T) {
	wc, rc := unixConns(t)
	wc.ringSize, wc.waitRoom = 4<<20, true
	var failed error
	cs := lazySender(t, wc, time.Hour, &failed) // only a flush or a large batch sends

	var want []byte
	write := func(p []byte) {
		t.Helper()
		if err := cs.write(int64(len(want)), p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	server := serveCache(t, rc)
	flushAndRead := func() {
		t.Helper()
		if err := cs.flushWith(testCtx(t), nil); err != nil {
			t.Fatal(err)
		}
		commtest.Eventually(t, 5*time.Second, func() bool {
			got, _ := server.received()
			return len(got) >= len(want)
		}, "the cache did not get every byte")
		if got, _ := server.received(); !bytes.Equal(got, want) {
			t.Fatal("the cache got other bytes")
		}
	}
	// The history's first bytes go to blocks, and the connection carries
	// shm.After bytes before it has a ring.
	for len(want) < writerHistory+shm.After {
		write(bytesOf(byte(len(want)), 64<<10))
	}
	flushAndRead()
	write(bytesOf(1, 100<<10)) // the ring is offered by this one's write at the latest
	flushAndRead()
	if wc.tx == nil {
		t.Fatal("no ring after shm.After bytes")
	}
	base := ringBytes(wc)

	// Messages: a small header, copied into a block, and 100 KiB put in
	// the ring at once.
	mark := int64(len(want))
	for i := range 5 {
		write(bytesOf(byte(i), 16))
		write(bytesOf(byte(10+i), 100<<10))
	}
	if n := ringBytes(wc) - base; n != 5*100<<10 {
		t.Fatalf("%d bytes put in the ring before the sender wrote, want %d", n, 5*100<<10)
	}
	end := int64(len(want))
	if b, ok := cs.since(mark+5, end); !ok || !bytes.Equal(b, want[mark+5:]) {
		t.Fatal("the history does not serve bytes waiting in the ring")
	}
	flushAndRead()
	if _, n := server.received(); n < 5 {
		t.Fatalf("%d frames referred to the ring, want the 5 messages'", n)
	}
	if _, ok := cs.since(mark+5, end); ok {
		t.Fatal("the history served ring bytes the server has released")
	}

	// 20 KiB queued in a block go through the ring when written: a write
	// after them must not be put there first.
	if err := cs.push(int64(len(want)), bytesOf(3, 20<<10)); err != nil {
		t.Fatal(err)
	}
	want = append(want, bytesOf(3, 20<<10)...)
	before := ringBytes(wc)
	write(bytesOf(4, 100<<10))
	if ringBytes(wc) != before {
		t.Fatal("a write was put in the ring ahead of queued bytes bound for it")
	}
	flushAndRead()
	if failed != nil {
		t.Fatal(failed)
	}
}

// cacheSide plays the server of a cache sender's connection (serveCache).
type cacheSide struct {
	mu     sync.Mutex
	got    []byte
	shared int // frames that referred to the ring
}

// serveCache reads every write frame on rc as it comes, resolving and
// releasing those that refer to the ring, and fails t when one is not a
// write at the next offset.
func serveCache(t *testing.T, rc *conn) *cacheSide {
	cs := &cacheSide{}
	go func() {
		for {
			f, err := rc.next()
			if err != nil {
				return
			}
			_, _, off, data, err := proto.DecodeData(f.Payload)
			if err == nil && f.Flags&proto.FlagShared != 0 {
				data, err = rc.shared(data)
			}
			cs.mu.Lock()
			if err != nil || f.Type != proto.TWrite || off != int64(len(cs.got)) {
				t.Errorf("frame type %d at %d (%v), want a write at %d", f.Type, off, err, len(cs.got))
				cs.mu.Unlock()
				return
			}
			cs.got = append(cs.got, data...)
			if f.Flags&proto.FlagShared != 0 {
				cs.shared++
				rc.rx.Release()
			}
			cs.mu.Unlock()
		}
	}()
	return cs
}

// received returns a copy of the bytes received so far, and how many
// frames referred to the ring.
func (cs *cacheSide) received() ([]byte, int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return bytes.Clone(cs.got), cs.shared
}

// ringBytes returns how many bytes c has put in its ring.
func ringBytes(c *conn) int64 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ringBytes
}

// TestCacheReadsBorrowServerSegments: a reader of the server's host
// reads a sealed instance's segments where the server keeps them (shared
// arena, see shm.Arena): byte-identical, and nearly every large frame is
// a loan rather than a copy into the ring. With Lend < 0 no frame is.
func TestCacheReadsBorrowServerSegments(t *testing.T) {
	needHost(t)
	const total = 24 << 20
	for _, lend := range []int{0, -1} {
		s, _, _, _ := pipelineOn(t, server.Config{Lend: lend}, nil)
		ctx := testCtx(t)
		payload := bytesOf(byte(lend), total)
		publish(t, s, "big", payload)
		r, err := s.Attach(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("Lend %d: read %d bytes, differing from the %d written", lend, len(got), total)
		}
		var borrowed uint64
		if rx := r.cc.rx; rx != nil {
			borrowed = rx.Borrowed()
		}
		t.Logf("Lend %d: %d frames borrowed, %d bytes through the ring", lend, borrowed, r.ringRead)
		switch {
		case lend == 0 && borrowed < (total-2*shm.After)/(1<<20):
			t.Fatalf("%d frames borrowed from the server's arena, want nearly all of %d MiB", borrowed, total>>20)
		case lend < 0 && borrowed != 0:
			t.Fatalf("%d frames borrowed with no arena", borrowed)
		}
		r.Close()
	}
}

// TestLentSegmentOutlivesTrimAndReuse: bytes a reader holds in place in
// the server's arena stay intact while other clients trim that instance
// away and fill the store with new bytes: the server reuses a segment's
// buffer only once the reader has released the frame, and never when it
// cut the reader's session (the reader may still be reading).
func TestLentSegmentOutlivesTrimAndReuse(t *testing.T) {
	needHost(t)
	for _, cut := range []bool{false, true} {
		lentSurvives(t, cut)
	}
}

func lentSurvives(t *testing.T, cut bool) {
	const total = 8 << 20
	sw, sr, _, _ := pipelineOn(t, server.Config{MemoryBytes: 64 << 20}, nil)
	ctx := testCtx(t)
	old := bytesOf(1, total)
	publish(t, sw, "old", old)
	r := mustAttach(t, sr, "old")
	defer r.Close()
	// Read until a frame comes as a loan, and stop 10 bytes into it.
	buf := make([]byte, 64<<10)
	off := 0
	for r.cc == nil || r.cc.rx == nil || r.cc.rx.Borrowed() == 0 {
		n, err := r.ReadContext(ctx, buf[:min(len(buf), total-off)])
		if err != nil {
			t.Fatalf("at %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], old[off:off+n]) {
			t.Fatalf("bytes at %d differ", off)
		}
		off += n
		if off == total {
			t.Fatal("no frame came as a loan")
		}
	}
	held := len(r.pending)
	if held < 64<<10 {
		t.Fatalf("only %d bytes of the loan left to read", held)
	}
	if cut {
		// A frame of an unknown wire version: the server closes the
		// session with loans outstanding. Drain the socket to its end, so
		// that the close has happened before the store is touched.
		raw := r.cc.c
		raw.Write(make([]byte, 64))
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, raw); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("draining the cut connection: %v", err)
		}
	}

	// Another client trims everything, and new bytes fill the store.
	if _, err := sw.Trim(ctx, r.info.Instance, 0, total); err != nil {
		t.Fatal(err)
	}
	publish(t, sw, "new", bytesOf(9, 3*total))

	for end := off + held; off < end; {
		n := copy(buf[:min(len(buf), end-off)], r.pending)
		r.pending = r.pending[n:]
		if !bytes.Equal(buf[:n], old[off:off+n]) {
			t.Fatalf("cut %v: lent bytes at %d changed after the trim", cut, off)
		}
		off += n
	}
}

// TestWritesGoStraightIntoSegments: a writer of the server's host writes
// large writes past its first segment into slots of the server's arena,
// which become the cache's segments (no copy in the server), and smaller
// ones (below slotMin) through its ring; byte-identical when read by a
// reader attached while the writer writes and by one attached after it
// closed.
func TestWritesGoStraightIntoSegments(t *testing.T) {
	needHost(t)
	const total = 24 << 20
	for _, chunk := range []int{1 << 20, 100_000, 300_000, 3 << 20} {
		for _, live := range []bool{true, false} {
			sw, sr, _, _ := pipeline(t, nil)
			ctx := testCtx(t)
			payload := bytesOf(byte(chunk), total)
			w, err := sw.Create(ctx, "into")
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan []byte, 1)
			readAll := func() {
				r, err := sr.Attach(ctx, "into")
				if err != nil {
					t.Error(err)
					got <- nil
					return
				}
				defer r.Close()
				b, err := io.ReadAll(r)
				if err != nil {
					t.Error(err)
				}
				got <- b
			}
			if live {
				go readAll()
			}
			for off := 0; off < total; off += chunk {
				if _, err := w.Write(payload[off:min(off+chunk, total)]); err != nil {
					t.Fatal(err)
				}
				// The server has handled the write, and given new slots,
				// when Flush returns: the next write finds them.
				if err := w.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if !live {
				readAll()
			}
			if b := <-got; !bytes.Equal(b, payload) {
				t.Fatalf("chunk %d, live %v: read %d bytes, differing from the %d written", chunk, live, len(b), total)
			}
			w.c.wmu.Lock()
			placed, ringed := w.c.arenaBytes, w.c.ringBytes
			w.c.wmu.Unlock()
			t.Logf("chunk %d, live %v: %d bytes into the server's segments, %d through the ring", chunk, live, placed, ringed)
			switch {
			case chunk < slotMin && placed != 0:
				t.Fatalf("chunk %d: %d bytes into the server's segments: writes below slotMin take no slot", chunk, placed)
			// All but the first segment, the first write (whose large
			// payload makes the server offer the arena) and the rest of
			// the segment it ends in.
			case chunk >= slotMin && placed < total-int64(max(chunk, 1<<20))-1<<20:
				t.Fatalf("chunk %d: only %d of %d bytes written into the server's segments", chunk, placed, total)
			}
		}
	}
}

// TestBadArenaWrites: a write reference into the server's arena that is
// not where a slot given to the writer holds the segment's bytes closes
// that connection with a protocol error; another client is served
// throughout.
func TestBadArenaWrites(t *testing.T) {
	needHost(t)
	for _, c := range []struct {
		name string
		ref  func(slot uint64, size int) (off int64, pos uint64)
	}{
		{"no slot given", func(slot uint64, size int) (int64, uint64) { return 3 << 20, shm.ArenaRef | (slot + 64*uint64(size)) }},
		{"not where the segment holds it", func(slot uint64, size int) (int64, uint64) { return 3<<20 + 7, shm.ArenaRef | (slot + 8) }},
		{"across the slot's end", func(slot uint64, size int) (int64, uint64) {
			return 4<<20 - 50, shm.ArenaRef | (slot + uint64(size) - 50)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sw, sr, _, _ := pipeline(t, nil)
			ctx := testCtx(t)
			w, err := sw.Create(ctx, "bad")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(bytesOf(1, 3<<20)); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			wc := w.c
			wc.wmu.Lock()
			rx := wc.rx
			var slot uint64
			var size int
			ok := rx != nil && rx.Slots() > 0
			if ok {
				size = rx.SlotSize()
				_, slot, _, ok = rx.Take() // the writer's next slot, given by the server
			}
			wc.wmu.Unlock()
			if !ok {
				t.Fatal("the writer has no slot of the server's arena")
			}
			off, pos := c.ref(slot, size)
			wc.wmu.Lock()
			_, err = wc.c.Write(proto.AppendSharedData(nil, proto.TWrite, 0, "direct", w.info.Instance, off, pos, 100))
			wc.wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			refused(t, w)
			serveAnother(t, sw, sr)
		})
	}
	t.Run("server without an arena", func(t *testing.T) {
		sw, sr, _, _ := pipelineOn(t, server.Config{Lend: -1}, nil)
		ctx := testCtx(t)
		w, err := sw.Create(ctx, "bad")
		if err != nil {
			t.Fatal(err)
		}
		w.c.wmu.Lock()
		_, err = w.c.c.Write(proto.AppendSharedData(nil, proto.TWrite, 0, "direct", w.info.Instance, 0, shm.ArenaRef, 100))
		w.c.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		refused(t, w)
		serveAnother(t, sw, sr)
	})
}

// refused checks that the server answered w's last frame with a protocol
// error and closed the connection: the writer's reply reader, which
// records the first failure, ends. (Close may instead report the broken
// pipe of its own request, depending on which comes first.)
func refused(t *testing.T, w *Writer) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server kept the connection after a bad arena write")
	}
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("after a bad arena write: %v, want a protocol error", err)
	}
	w.Close(testCtx(t))
}

// serveAnother checks that the server serves another client: sr publishes
// a channel that sw reads back.
func serveAnother(t *testing.T, sw, sr *Space) {
	t.Helper()
	ctx := testCtx(t)
	publish(t, sr, "good", bytesOf(2, 2<<20))
	r, err := sw.Attach(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := io.ReadAll(r); err != nil || !bytes.Equal(b, bytesOf(2, 2<<20)) {
		t.Fatalf("the other client's channel: %v", err)
	}
}
