package comm_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

type celsius float32

func TestElemCodes(t *testing.T) {
	if comm.ElemOf[float64]() != comm.Float64 || comm.ElemOf[celsius]() != comm.Float32 || comm.ElemOf[complex64]() != comm.Complex64 {
		t.Fatal("wrong element codes")
	}
	in := []complex128{1 + 2i, -3.5 - 0.25i}
	out := make([]complex128, 2)
	comm.FromBytes(out, comm.AsBytes(in))
	if !slices.Equal(in, out) {
		t.Fatalf("round trip %v -> %v", in, out)
	}
	if b := comm.AsBytes([]uint16{0x0102}); b[0] != 0x02 || b[1] != 0x01 {
		t.Fatalf("not little-endian: % x", b)
	}
}

// Elements split across frames and reads come out whole; a stream that
// ends inside an element is an error, not a truncated value.
func TestTypedReadSplitElements(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openSpace(t, newClient(t, addr), "split")
	w, err := comm.CreateTyped[float64](ctx, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{1, 2.5, -3, 4e10, 5}
	raw := comm.AsBytes(want)
	for i := 0; i < len(raw); i += 3 {
		w.Writer().Write(raw[i:min(len(raw), i+3)])
	}
	w.Writer().Write([]byte{9, 9}) // a torn sixth element
	w.Close(ctx)
	r, err := comm.AttachTyped[float64](ctx, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	buf := make([]float64, 2)
	for {
		n, err := r.Read(ctx, buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if !errors.Is(err, comm.ErrPartial) {
				t.Fatalf("end: %v, want ErrPartial", err)
			}
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
