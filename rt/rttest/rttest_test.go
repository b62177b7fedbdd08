package rttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

func TestRunReportsErrorsAndCancels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	boom := errors.New("boom")
	err := rttest.Run(ctx, 3, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 1 {
			return boom
		}
		_, err := rt.Recv(ctx, c, 1, 0, make([]int8, 1)) // never sent
		return err
	}, rttest.Options{})
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run waited for the deadline instead of cancelling")
	}
}

func TestCrashRestartsWithNextIncarnation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var incs []int
	err := rttest.Run(ctx, 1, func(ctx context.Context, c *rt.Comm) error {
		incs = append(incs, c.Incarnation())
		if c.Incarnation() < 2 {
			return rttest.ErrCrashed
		}
		return nil
	}, rttest.Options{})
	if err != nil || len(incs) != 3 || incs[2] != 2 {
		t.Fatalf("err %v, incarnations %v", err, incs)
	}
	err = rttest.Run(ctx, 1, func(ctx context.Context, c *rt.Comm) error {
		return rttest.ErrCrashed
	}, rttest.Options{MaxRestarts: 2})
	if !errors.Is(err, rttest.ErrCrashed) {
		t.Fatalf("endless crashes: %v", err)
	}
}

func TestCrashAfterWritesTearsAndCutsOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp := rt.NewMemSpace()
	err := rttest.Run(ctx, 1, func(ctx context.Context, c *rt.Comm) error {
		w, err := c.Create(ctx, "x")
		if err != nil {
			return err
		}
		if c.Incarnation() == 0 {
			if _, err := w.Write([]byte("abcd")); err != nil {
				return err
			}
			_, err := w.Write([]byte("efgh")) // second write: torn, then dead
			if !errors.Is(err, rttest.ErrCrashed) {
				t.Errorf("crashing write: %v", err)
			}
			if _, _, _, err := c.Stat(ctx, "x"); !errors.Is(err, rttest.ErrCrashed) {
				t.Errorf("stat after crash: %v", err)
			}
			return err
		}
		length, sealed, _, err := c.Stat(ctx, "x")
		if err != nil || length != 6 || sealed {
			t.Errorf("after crash: length %d sealed %v err %v, want 6 unsealed", length, sealed, err)
		}
		if _, err := w.Write([]byte("abcdefgh")); err != nil { // replay completes it
			return err
		}
		return w.Close(ctx)
	}, rttest.Options{Space: sp, CrashAfterWrites: map[int]int{0: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if length, sealed, _, _ := sp.Stat(ctx, "x"); length != 8 || !sealed {
		t.Fatalf("final: length %d sealed %v", length, sealed)
	}
}
