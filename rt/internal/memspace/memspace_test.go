package memspace

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func readAll(t *testing.T, r *Reader) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	buf := make([]byte, 3)
	for {
		n, err := r.ReadContext(ctx, buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPersistentChannel(t *testing.T) {
	ctx := context.Background()
	s := New()
	w, err := s.Create(ctx, "a", "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), 20000) // spans chunks
	for _, p := range [][]byte{[]byte("hello "), big, []byte("world")} {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	want := append(append([]byte("hello "), big...), "world"...)
	// A resumed writer replays: equal bytes are dropped, new ones appended.
	w2, err := s.Create(ctx, "a", "k", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(want[3 : len(want)-2]); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("ld!")); err != nil {
		t.Fatal(err)
	}
	want = append(want, '!')
	if _, err := w2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	want = append(want, 'x')
	if _, err := s.Create(ctx, "a", "k", int64(len(want)+1)); !errors.Is(err, ErrGap) {
		t.Fatalf("create past the end: %v", err)
	}
	w3, _ := s.Create(ctx, "a", "k", 0)
	if _, err := w3.Write([]byte("HELLO")); !errors.Is(err, ErrDiverged) {
		t.Fatalf("diverging replay: %v", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("more")); !errors.Is(err, ErrSealed) {
		t.Fatalf("write after seal: %v", err)
	}
	// Two late readers both read everything.
	for range 2 {
		r, err := s.Attach(ctx, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, want %d", len(got), len(want))
		}
	}
	n, sealed, found, err := s.Stat(ctx, "a")
	if n != int64(len(want)) || !sealed || !found || err != nil {
		t.Fatalf("stat %d %v %v %v", n, sealed, found, err)
	}
	if _, _, found, _ := s.Stat(ctx, "b"); found {
		t.Fatal("stat of a missing channel found it")
	}
}

func TestAttachWaitsAndReaderWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := New()
	got := make(chan []byte, 1)
	go func() {
		r, err := s.Attach(ctx, "late", 0)
		if err != nil {
			got <- nil
			return
		}
		buf := make([]byte, 8)
		n, _ := r.ReadContext(ctx, buf)
		got <- buf[:n]
	}()
	w, _ := s.Create(ctx, "late", "", 0)
	if _, err := w.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "hi" {
		t.Fatalf("got %q", b)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := s.Attach(short, "never", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attach to a missing channel: %v", err)
	}
}
