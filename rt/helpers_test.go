package rt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// run runs fn on n ranks with a deadline, failing the test on any error.
func run(t *testing.T, n int, opts rttest.Options, fn rttest.Func) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rttest.Run(ctx, n, fn, opts); err != nil {
		t.Fatal(err)
	}
}

// mk converts a small integer to any element type.
func mk[T rt.Elem](v int) T {
	var z T
	switch p := any(&z).(type) {
	case *int8:
		*p = int8(v)
	case *uint8:
		*p = uint8(v)
	case *int16:
		*p = int16(v)
	case *uint16:
		*p = uint16(v)
	case *int32:
		*p = int32(v)
	case *uint32:
		*p = uint32(v)
	case *int64:
		*p = int64(v)
	case *uint64:
		*p = uint64(v)
	case *float32:
		*p = float32(v)
	case *float64:
		*p = float64(v)
	case *complex64:
		*p = complex(float32(v), float32(-v))
	case *complex128:
		*p = complex(float64(v), float64(-v))
	}
	return z
}

// vec returns rank r's deterministic input of length k.
func vec[T rt.Elem](r, k, salt int) []T {
	v := make([]T, k)
	for i := range v {
		v[i] = mk[T]((r*31 + i*7 + salt*13) % 61)
	}
	return v
}

func equal[T rt.Elem](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func check[T rt.Elem](what string, got, want []T) error {
	if !equal(got, want) {
		if len(got) > 12 || len(want) > 12 {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			return fmt.Errorf("%s: got %d elements, want %d: first difference at %d", what, len(got), len(want), i)
		}
		return fmt.Errorf("%s: got %v, want %v", what, got, want)
	}
	return nil
}
