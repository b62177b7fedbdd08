package comm

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/server"
	"github.com/pispace/pispace/comm/wire"
)

// These tests look inside the direct path: inline writes and their flow
// control, the writer's history, and connection reuse.

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tcpPair returns the two ends of a loopback TCP connection: the writer's
// as a conn, the reader's raw.
func tcpPair(t *testing.T) (*conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close(); wc.Close() })
	return newConn(wc, 8<<20, 0), rc
}

func bytesOf(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// readData reads data frames of request req from r until want bytes from
// offset at have arrived, checking that they are contiguous.
func readData(t *testing.T, r *wire.Reader, req uint32, at int64, want []byte) {
	t.Helper()
	var got []byte
	for len(got) < len(want) {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		if f.Type != proto.TData || f.Req != req {
			t.Fatalf("frame type %d req %d, want data of %d", f.Type, f.Req, req)
		}
		_, _, off, data, err := proto.DecodeData(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if off != at+int64(len(got)) {
			t.Fatalf("data at %d, want %d", off, at+int64(len(got)))
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, differ from the %d written", len(got), len(want))
	}
}

func sinkState(s *sink) (inline int64, queued int, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inline, s.queued, s.busy
}

// TestSinkInlineWithinWindow: Write hands bytes to the connection itself
// while the reader's unacknowledged bytes stay within the window, queues
// them past it, and writes inline again once the reader acknowledges.
func TestSinkInlineWithinWindow(t *testing.T) {
	wc, rc := tcpPair(t)
	const window = 64 << 10
	s := newSink(wc, 7, "sp", 1, 1<<20, window, 16<<10, new(sync.Pool), 0)
	s.start(nil)
	t.Cleanup(func() { s.abort(); s.wait() })
	r := wire.NewReader(rc, 8<<20)
	f, err := r.Next()
	if err != nil || f.Type != proto.TOK || f.Req != 7 {
		t.Fatalf("subscribe reply %v %v", f, err)
	}
	var m subscribedMsg
	if err := proto.Unmarshal(f.Payload, &m); err != nil || m.AckEvery != window/4 {
		t.Fatalf("reply says ack every %d (%v), want %d", m.AckEvery, err, window/4)
	}
	commtest.Eventually(t, 5*time.Second, func() bool { _, _, busy := sinkState(s); return !busy }, "sink stays busy")

	a, b, c := bytesOf(1, 40<<10), bytesOf(2, 40<<10), bytesOf(3, 40<<10)
	if !s.offer(0, a) {
		t.Fatal("sink dropped")
	}
	if in, q, _ := sinkState(s); in != int64(len(a)) || q != 0 {
		t.Fatalf("within the window: inline %d queued %d, want %d inline", in, q, len(a))
	}
	if !s.offer(int64(len(a)), b) { // 80 KiB unacknowledged: past the window
		t.Fatal("sink dropped")
	}
	if in, _, _ := sinkState(s); in != int64(len(a)) {
		t.Fatalf("past the window: %d bytes inline, want %d", in, len(a))
	}
	readData(t, r, 7, 0, append(append([]byte(nil), a...), b...))

	// The reader acknowledges what it read: inline writes resume.
	s.ack(int64(len(a) + len(b)))
	commtest.Eventually(t, 5*time.Second, func() bool { _, q, busy := sinkState(s); return q == 0 && !busy },
		"the queue never drained")
	if !s.offer(int64(len(a)+len(b)), c) {
		t.Fatal("sink dropped")
	}
	if in, _, _ := sinkState(s); in != int64(len(a)+len(c)) {
		t.Fatalf("after the ack: %d bytes inline, want %d", in, len(a)+len(c))
	}
	readData(t, r, 7, int64(len(a)+len(b)), c)
}

// TestSinkDropsStalledReader: a reader that reads nothing never makes the
// writer wait; once its queue passes the limit it is dropped.
func TestSinkDropsStalledReader(t *testing.T) {
	wc, _ := tcpPair(t)
	s := newSink(wc, 1, "sp", 1, 1<<20, 64<<10, 64<<10, new(sync.Pool), 0)
	s.start(nil)
	t.Cleanup(func() { s.abort(); s.wait() })
	done := make(chan int64, 1)
	go func() {
		p := bytesOf(4, 256<<10)
		var off int64
		for s.offer(off, p) {
			off += int64(len(p))
			if off > 1<<30 {
				break
			}
		}
		done <- off
	}()
	select {
	case off := <-done:
		if off > 1<<30 {
			t.Fatal("a reader that reads nothing was never dropped")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("offer blocked on a stalled reader")
	}
}

// mustCreate creates channel name in s.
func mustCreate(t *testing.T, s *Space, name string) *Writer {
	t.Helper()
	w, err := s.Create(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// mustAttach attaches channel name in s.
func mustAttach(t *testing.T, s *Space, name string) *Reader {
	t.Helper()
	r, err := s.Attach(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustWrite writes p to w.
func mustWrite(t *testing.T, w *Writer, p []byte) {
	t.Helper()
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
}

// mustClose closes w.
func mustClose(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// openPair creates channel name in sw and attaches it in sr.
func openPair(t *testing.T, sw, sr *Space, name string) (*Writer, *Reader) {
	t.Helper()
	return mustCreate(t, sw, name), mustAttach(t, sr, name)
}

// publish writes p as a whole channel name in sw: create, write, close.
func publish(t *testing.T, sw *Space, name string, p []byte) {
	t.Helper()
	w := mustCreate(t, sw, name)
	mustWrite(t, w, p)
	mustClose(t, w)
}

// pipeline starts a server and two clients (writer side, reader side) with
// the given direct-path settings, and opens one space in each.
func pipeline(t *testing.T, mod func(*Config)) (*Space, *Space, *Client, *Client) {
	t.Helper()
	return pipelineOn(t, server.Config{}, mod)
}

// pipelineOn is pipeline on a server configured with scfg.
func pipelineOn(t *testing.T, scfg server.Config, mod func(*Config)) (*Space, *Space, *Client, *Client) {
	t.Helper()
	_, addr := commtest.StartServer(t, scfg)
	var spaces [2]*Space
	var clients [2]*Client
	for i := range spaces {
		cfg := Config{Servers: []string{addr}}
		if mod != nil {
			mod(&cfg)
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := c.OpenSpace(testCtx(t), "direct")
		if err != nil {
			t.Fatal(err)
		}
		spaces[i], clients[i] = s, c
	}
	return spaces[0], spaces[1], clients[0], clients[1]
}

// TestSubscribeServedFromHistory: a reader attaching after the first
// writes gets them from the writer's memory on the direct path (no trip to
// the cache), acknowledges what it reads, and at the end leaves its direct
// connection to the next reader of the same writer.
func TestSubscribeServedFromHistory(t *testing.T) {
	ctx := testCtx(t)
	sw, sr, wcl, rcl := pipeline(t, func(c *Config) { c.DirectWindow = 64 << 10 })
	first := bytesOf(5, 100<<10)
	for round := range 2 {
		w, err := sw.Create(ctx, "ch")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(first); err != nil {
			t.Fatal(err)
		}
		r, err := sr.Attach(ctx, "ch")
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(first))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, first) {
			t.Fatalf("round %d: first bytes differ (%v)", round, err)
		}
		if r.src != srcDirect || r.tries != 0 {
			t.Fatalf("round %d: reader on source %d after %d catch-ups, want direct at once", round, r.src, r.tries)
		}
		if r.ackEvery != 16<<10 {
			t.Fatalf("reader acknowledges every %d bytes, want the writer's 16 KiB", r.ackEvery)
		}
		w.mu.Lock()
		s := w.sinks[0]
		w.mu.Unlock()
		commtest.Eventually(t, 5*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.acked >= int64(len(first))-r.ackEvery
		}, "the writer never heard of the reader's progress")
		more := bytesOf(6, 10<<10)
		if _, err := w.Write(more); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(rest, more) {
			t.Fatalf("round %d: rest differs (%v)", round, err)
		}
		r.Close()
		rcl.mu.Lock()
		idle := len(rcl.idle[wcl.direct.addr()])
		rcl.mu.Unlock()
		if idle != 1 {
			t.Fatalf("round %d: %d idle direct connections, want 1", round, idle)
		}
	}
	wcl.direct.mu.Lock()
	n := len(wcl.direct.conns)
	wcl.direct.mu.Unlock()
	if n != 1 {
		t.Fatalf("the writer served %d direct connections over two channels, want 1 reused", n)
	}
}

// TestStalledDirectReaderFallsBack: a direct reader that stops reading
// never holds the writer up; it is dropped, and later reads every byte,
// in order, from the cache.
func TestStalledDirectReaderFallsBack(t *testing.T) {
	ctx := testCtx(t)
	sw, sr, _, _ := pipeline(t, func(c *Config) { c.SinkQueue = 1 << 20; c.DirectWindow = 128 << 10 })
	w, r := openPair(t, sw, sr, "ch")
	want := bytesOf(7, 24<<20)
	if _, err := w.Write(want[:1]); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(r, one); err != nil || r.src != srcDirect {
		t.Fatalf("reader not on the direct path (source %d, %v)", r.src, err)
	}
	wrote := make(chan error, 1)
	go func() {
		for i := 1; i < len(want); i += 64 << 10 {
			if _, err := w.Write(want[i:min(len(want), i+64<<10)]); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Close(ctx)
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the writer waited for a reader that reads nothing")
	}
	w.mu.Lock()
	n := len(w.sinks)
	w.mu.Unlock()
	if n != 0 {
		t.Fatal("the stalled reader was never dropped")
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(one, rest...), want) {
		t.Fatalf("read %d bytes, differ from the %d written", 1+len(rest), len(want))
	}
}

// TestCacheSenderBatchesAndKeepsHistory: with direct readers (lazy), small
// writes reach the cache connection in a few frames, contiguous and
// intact; the history serves the last writerHistory bytes and no older.
// lazySender returns a cache sender on wc that batches (as for direct
// readers) with the given delay, 256 KiB frames and a 4 MiB queue; a
// failure is stored in *failed.
func lazySender(t *testing.T, wc *conn, delay time.Duration, failed *error) *cacheSender {
	c := &Client{cfg: Config{ChunkSize: 256 << 10, CacheQueue: 4 << 20}}
	cs := newCacheSender(wc, &Space{c: c, name: "sp"}, 9, 0, func(err error) { *failed = err })
	t.Cleanup(cs.stop)
	cs.mu.Lock()
	cs.delay = delay
	cs.mu.Unlock()
	cs.setLazy(true)
	return cs
}

func TestCacheSenderBatchesAndKeepsHistory(t *testing.T) {
	wc, rc := tcpPair(t)
	var failed error
	cs := lazySender(t, wc, time.Hour, &failed) // only a flush or a large batch sends
	var want []byte
	for i := range 200 {
		p := bytesOf(byte(i), 100)
		if err := cs.push(int64(len(want)), p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	// Give a sender that is not lazy every chance to send (this asserts
	// that nothing happens, so it polls for a while).
	for deadline := time.Now().Add(20 * time.Millisecond); time.Now().Before(deadline); runtime.Gosched() {
		cs.mu.Lock()
		sent := cs.sent
		cs.mu.Unlock()
		if sent != 0 {
			t.Fatalf("a lazy sender sent %d bytes of small writes before a flush", sent)
		}
	}
	if err := cs.flushWith(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
	frames := 0
	r := wire.NewReader(rc, 8<<20)
	var got []byte
	for len(got) < len(want) {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		_, _, off, data, err := proto.DecodeData(f.Payload)
		if err != nil || f.Type != proto.TWrite || off != int64(len(got)) {
			t.Fatalf("frame %d: type %d at %d, want a write at %d (%v)", frames, f.Type, off, len(got), err)
		}
		got = append(got, data...)
		frames++
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the cache got other bytes")
	}
	if frames > 4 { // one per block
		t.Fatalf("200 small writes took %d frames: not batched", frames)
	}
	if b, ok := cs.since(1000, int64(len(want))); !ok || !bytes.Equal(b, want[1000:]) {
		t.Fatal("history does not serve recent bytes")
	}

	cs.setLazy(false)
	big := bytesOf(1, 3*writerHistory)
	go io.Copy(io.Discard, rc)
	if err := cs.push(int64(len(want)), big); err != nil {
		t.Fatal(err)
	}
	end := int64(len(want) + len(big))
	if err := cs.flushWith(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := cs.since(0, end); ok {
		t.Fatal("history kept more than writerHistory bytes")
	}
	if b, ok := cs.since(end-writerHistory, end); !ok || !bytes.Equal(b, big[len(big)-writerHistory:]) {
		t.Fatal("history lost its last writerHistory bytes")
	}
	if failed != nil {
		t.Fatal(failed)
	}
}

// TestLazySenderSendsWhatCameDuringAWrite: bytes a batching sender queues
// while it writes an earlier batch go out after the batching delay, not
// only with the next large batch, Flush or Close (a reader that fell back
// to the cache, its writer waiting for its answer, waited for them
// forever).
func TestLazySenderSendsWhatCameDuringAWrite(t *testing.T) {
	wc, rc := unixConns(t)
	var failed error
	cs := lazySender(t, wc, 5*time.Millisecond, &failed)
	// A batch goes after the delay, and blocks on the socket: nobody
	// reads.
	const batch = lazyBytes - 100<<10
	if err := cs.push(0, bytesOf(1, batch)); err != nil {
		t.Fatal(err)
	}
	commtest.Eventually(t, 5*time.Second, func() bool {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return cs.writing
	}, "the sender never wrote the batch")
	if err := cs.push(batch, bytesOf(2, 100)); err != nil {
		t.Fatal(err)
	}
	server := serveCache(t, rc)
	commtest.Eventually(t, 5*time.Second, func() bool {
		got, _ := server.received()
		return len(got) == batch+100
	}, "the bytes queued during a write were never sent")
	if failed != nil {
		t.Fatal(failed)
	}
}

// TestCacheWriteFailureWakesAWaitingWrite: a Write waiting for room in the
// cache queue, holding the writer's lock, learns that the cache write
// failed: the sender must not need that lock to report the failure.
func TestCacheWriteFailureWakesAWaitingWrite(t *testing.T) {
	wc, rc := unixConns(t)
	var writerLock sync.Mutex // Writer.mu: Write holds it while it waits
	c := &Client{cfg: Config{ChunkSize: 256 << 10, CacheQueue: 1 << 20}}
	cs := newCacheSender(wc, &Space{c: c, name: "sp"}, 9, 0, func(error) {
		writerLock.Lock() // as Writer.fail does
		writerLock.Unlock()
	})
	t.Cleanup(cs.stop)
	done := make(chan error, 1)
	go func() {
		writerLock.Lock()
		defer writerLock.Unlock()
		// More than the queue and the socket hold, and nobody reads.
		done <- cs.push(0, bytesOf(1, 16<<20))
	}()
	commtest.Eventually(t, 5*time.Second, func() bool {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return cs.writing && cs.end-cs.sent >= int64(cs.limit)
	}, "the queue never filled")
	rc.close() // the server goes away: the write in progress fails
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write into a failed cache queue succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write waiting for the queue never heard of the failure")
	}
}

// TestBulkReaderFollowsCache: a reader whose catch-up round read bulk data
// follows the cache instead of trying a writer that streams (srcBulk), and
// goes back to the direct path once the writer sends small messages; every
// byte arrives once, in order.
func TestBulkReaderFollowsCache(t *testing.T) {
	ctx := testCtx(t)
	sw, sr, _, _ := pipeline(t, nil)
	w, r := openPair(t, sw, sr, "ch")
	var want []byte
	write := func(p []byte) {
		t.Helper()
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	read := func(n int) {
		t.Helper()
		got := make([]byte, n)
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatal(err)
		}
		if at := int(r.off) - n; !bytes.Equal(got, want[at:at+n]) {
			t.Fatalf("bytes at %d differ", at)
		}
	}
	for i := range 8 { // far past the writer's history: the reader catches up
		write(bytesOf(byte(i), 1<<20))
	}
	read(8 << 20)
	for i := range 8 {
		write(bytesOf(byte(8+i), 1<<20))
	}
	read(1 << 20)
	if r.src != srcBulk {
		t.Fatalf("after a catch-up round of 8 MiB the reader is on source %d, want the cache (bulk)", r.src)
	}
	read(7 << 20)
	for i := range 2 * smallRun {
		write(bytesOf(byte(i), 100))
		read(100)
	}
	if r.src != srcDirect {
		t.Fatalf("after %d small messages the reader is on source %d, want direct", 2*smallRun, r.src)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("at the end: %d more bytes, %v", len(rest), err)
	}
}
