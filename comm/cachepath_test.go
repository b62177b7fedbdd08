package comm_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

// TestCacheFollowerInLockstep: with the direct path off, a reader follows
// the writer through the cache, parked at the end before every write: each
// append must wake it (the server tells the lookup service of appends only
// while readers wait), and the lengths reported are the stored ones.
func TestCacheFollowerInLockstep(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 10*time.Second)
	off := func(c *comm.Config) { c.DirectAddr = "off" }
	sw := openSpace(t, newClient(t, addr, off), "follow")
	sr := openSpace(t, newClient(t, addr, off), "follow")
	w, err := sw.Create(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sr.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	buf := make([]byte, 333)
	for i := range 50 {
		msg := payload(uint64(i), len(buf))
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := readFull(ctx, r, buf); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(buf, msg) {
			t.Fatalf("message %d differs", i)
		}
		all = append(all, msg...)
	}
	info, err := sr.Stat(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	if info.Length != int64(len(all)) || info.Sealed {
		t.Fatalf("stat: length %d sealed %v, want %d unsealed", info.Length, info.Sealed, len(all))
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the last message: %d bytes, %v; want EOF", len(rest), err)
	}
}

// readFull is io.ReadFull bounded by ctx.
func readFull(ctx context.Context, r *comm.Reader, p []byte) error {
	for n := 0; n < len(p); {
		m, err := r.ReadContext(ctx, p[n:])
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}
