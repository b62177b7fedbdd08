package comm_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

// TestTrim: a consumer trims what it has read; the server lets those
// segments go, a reader resuming below the trim point is told ErrTrimmed,
// one at or above it reads the rest intact, and a writer's replay over
// trimmed bytes is accepted.
func TestTrim(t *testing.T) {
	srv, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	cw := newClient(t, addr)
	sw := openSpace(t, cw, "trim")
	sr := openSpace(t, newClient(t, addr), "trim")
	const mib = 1 << 20
	src := payload(7, 6*mib+5)
	w, err := sw.Create(ctx, "ch", comm.WithWriterKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := sr.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3*mib+100)
	if err := readFull(ctx, r, got); err != nil {
		t.Fatal(err)
	}
	dropped, err := r.Trim(ctx, 0, r.Offset())
	if err != nil || dropped != 3*mib {
		t.Fatalf("Trim(0, %d) = %d, %v; want 3 MiB (whole segments only)", r.Offset(), dropped, err)
	}
	if st := srv.CacheStats(); st.TrimmedBytes != 3*mib {
		t.Fatalf("server TrimmedBytes %d, want %d", st.TrimmedBytes, 3*mib)
	}
	if dropped, err := sr.Trim(ctx, r.Info().Instance, 0, mib); err != nil || dropped != 0 {
		t.Fatalf("Trim of trimmed bytes = %d, %v", dropped, err)
	}
	if _, err := sr.Trim(ctx, r.Info().Instance, mib, 0); !errors.Is(err, comm.ErrProtocol) {
		t.Fatalf("Trim of a reversed range: %v", err)
	}

	id := r.Info().Instance
	late, err := sr.Attach(ctx, "ch", comm.AtInstance(id), comm.AtOffset(mib))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.ReadContext(ctx, make([]byte, 10)); !errors.Is(err, comm.ErrTrimmed) {
		t.Fatalf("read below the trim point: %v, want ErrTrimmed", err)
	}
	late.Close()

	// The writer crashes and, restarted, replays from 0: the trimmed part
	// is taken unchecked, the rest compared, and it goes on.
	cw.Close()
	w2, err := openSpace(t, newClient(t, addr), "trim").Create(ctx, "ch", comm.WithWriterKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	more := payload(8, 1000)
	if _, err := w2.Write(append(bytes.Clone(src), more...)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(ctx); err != nil {
		t.Fatalf("replay and close: %v", err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(src[len(got):]), more...)
	if !bytes.Equal(rest, want) {
		t.Fatalf("rest after the trim: %d bytes, want %d identical", len(rest), len(want))
	}

	if _, err := sr.Trim(ctx, id+100, 0, 1); !errors.Is(err, comm.ErrNotFound) {
		t.Fatalf("Trim of an unknown instance: %v", err)
	}
}
