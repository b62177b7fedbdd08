package server

import (
	"testing"

	"github.com/pispace/pispace/comm/internal/shm"
)

// TestSlotTarget: a session's writer gets more slots queued, up to
// slotsMax, each time it is found to have taken every slot given; never
// for an empty queue before anything was given, nor while some are left.
func TestSlotTarget(t *testing.T) {
	for _, c := range []struct {
		cur, queued int
		given       bool
		want        int
	}{
		{slotsWanted, 0, false, slotsWanted}, // the first refill
		{slotsWanted, 1, true, slotsWanted},
		{slotsWanted, 0, true, 2 * slotsWanted},
		{2 * slotsWanted, 0, true, min(4*slotsWanted, slotsMax)},
		{slotsMax, 0, true, slotsMax},
		{slotsMax, 3, true, slotsMax},
	} {
		if got := slotTarget(c.cur, c.queued, c.given); got != c.want {
			t.Errorf("slotTarget(%d, %d, %v) = %d, want %d", c.cur, c.queued, c.given, got, c.want)
		}
	}
	if slotsMax > shm.SlotQueue { // the ring's header holds no more
		t.Fatalf("slotsMax %d exceeds the slot queue", slotsMax)
	}
}
