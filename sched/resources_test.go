package sched

import (
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

func node(name string, slots, free int, mem, freeMem int64) Node {
	return Node{Name: name, Slots: slots, FreeSlots: free, Mem: mem, FreeMem: freeMem}
}

func TestUnfitAndBusy(t *testing.T) {
	n := node("a", 2, 1, 1024*mib, 300*mib)
	n.MaxTime = time.Minute
	tests := []struct {
		need       Need
		unfit      string
		busy       string
		permanent  bool
		admitEmpty bool
	}{
		{need: Need{Mem: 100 * mib}, admitEmpty: true},
		{need: Need{Mem: 2048 * mib}, unfit: "rank needs 2 GiB of memory, node has 1 GiB in total", permanent: true},
		{need: Need{Time: time.Hour}, unfit: "rank needs 1h0m0s, node allows at most 1m0s", permanent: true},
		{need: Need{Mem: 512 * mib}, busy: "only 300 MiB of memory free, rank needs 512 MiB"},
	}
	for _, tt := range tests {
		if got := n.Unfit(tt.need); got != tt.unfit {
			t.Errorf("Unfit(%+v) = %q, want %q", tt.need, got, tt.unfit)
		}
		if tt.unfit == "" {
			if got := n.Busy(tt.need); got != tt.busy {
				t.Errorf("Busy(%+v) = %q, want %q", tt.need, got, tt.busy)
			}
		}
		reason, perm := Admit(n, tt.need)
		if (reason == "") != tt.admitEmpty || perm != tt.permanent {
			t.Errorf("Admit(%+v) = %q, %v", tt.need, reason, perm)
		}
	}
	full := node("b", 2, 0, 0, 0)
	if got := full.Busy(Need{}); got != "no free slot (2 of 2 in use)" {
		t.Errorf("Busy(full) = %q", got)
	}
	if got := full.Busy(Need{Oversubscribe: true}); got != "" {
		t.Errorf("Busy(full, oversubscribe) = %q, want accept", got)
	}
	if got := node("c", 0, 0, 0, 0).Unfit(Need{}); !strings.Contains(got, "no rank slots") {
		t.Errorf("Unfit(no slots) = %q", got)
	}
}

func TestReserveRelease(t *testing.T) {
	n := node("a", 2, 2, 100, 100)
	need := Need{Mem: 30}
	r := n.Reserve(need)
	if r.FreeSlots != 1 || r.FreeMem != 70 || r.Seq != 1 {
		t.Fatalf("Reserve = %+v", r)
	}
	back := r.Release(need)
	if back.FreeSlots != 2 || back.FreeMem != 100 || back.Seq != 2 {
		t.Fatalf("Release = %+v", back)
	}
}

func TestCandidatesBestFit(t *testing.T) {
	nodes := []Node{
		node("big", 8, 8, 8192*mib, 8192*mib),
		node("small", 4, 1, 1024*mib, 600*mib),
		node("mid", 4, 2, 2048*mib, 600*mib),
		node("full", 4, 0, 2048*mib, 2048*mib),
		node("tiny", 4, 4, 256*mib, 256*mib),
	}
	got := names(Candidates(nodes, Need{Mem: 512 * mib}))
	want := "small,mid,big" // equal leftover: fewer free slots first
	if got != want {
		t.Fatalf("Candidates = %s, want %s", got, want)
	}
	got = names(Candidates(nodes, Need{Mem: 512 * mib, Oversubscribe: true}))
	if got != "small,mid,full,big" {
		t.Fatalf("Candidates oversubscribe = %s", got)
	}
	if len(Candidates(nodes, Need{Mem: 9000 * mib})) != 0 {
		t.Fatal("a rank larger than every node got candidates")
	}
}

func names(ns []Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

func TestRendezvous(t *testing.T) {
	if Rendezvous("job", nil) != "" {
		t.Fatal("empty set chose a name")
	}
	set := []string{"a", "b", "c", "d", "e"}
	counts := map[string]int{}
	moved := 0
	for i := range 1000 {
		key := "job-" + string(rune('A'+i%26)) + strings.Repeat("x", i%7) + string(rune(i))
		got := Rendezvous(key, set)
		rev := []string{"e", "d", "c", "b", "a"}
		if again := Rendezvous(key, rev); again != got {
			t.Fatalf("order changed the choice: %s vs %s", got, again)
		}
		counts[got]++
		if got != "c" && Rendezvous(key, []string{"a", "b", "d", "e"}) != got {
			moved++
		}
	}
	if moved != 0 {
		t.Fatalf("removing c moved %d keys that did not choose c", moved)
	}
	for _, n := range set {
		if counts[n] < 120 {
			t.Fatalf("uneven spread: %v", counts)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{100: "100 B", 1024: "1 KiB", 512 * mib: "512 MiB", 1536 * mib: "1.5 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
