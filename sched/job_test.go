package sched

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type harness struct {
	t *testing.T
	j *Job
}

func newHarness(t *testing.T, cfg JobConfig, nodes ...Node) *harness {
	t.Helper()
	j, err := NewJob(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, j: j}
	for _, n := range nodes {
		h.step(NodeUp{Node: n})
	}
	return h
}

func (h *harness) step(ev Event) []Action {
	h.t.Helper()
	if err := h.j.Step(ev); err != nil {
		h.t.Fatalf("Step(%#v): %v", ev, err)
	}
	return h.j.Ready()
}

func offers(as []Action) []Offer {
	var out []Offer
	for _, a := range as {
		if o, ok := a.(Offer); ok {
			out = append(out, o)
		}
	}
	return out
}

func find[T Action](as []Action) (T, bool) {
	for _, a := range as {
		if x, ok := a.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}

// acceptAll answers every offer with Accepted and returns rank -> node.
func (h *harness) acceptAll(os []Offer) map[int]string {
	h.t.Helper()
	where := map[int]string{}
	for _, o := range os {
		h.step(Accepted{Rank: o.Rank, Incarnation: o.Incarnation, Node: o.Node})
		where[o.Rank] = o.Node
	}
	return where
}

func TestJobSpreadsOverNodes(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 6},
		node("a", 2, 2, 0, 0), node("b", 2, 2, 0, 0), node("c", 2, 2, 0, 0))
	as := h.step(Start{})
	os := offers(as)
	if len(os) != 6 {
		t.Fatalf("got %d offers, want 6: %v", len(os), as)
	}
	per := map[string]int{}
	for _, o := range os {
		per[o.Node]++
	}
	if per["a"] != 2 || per["b"] != 2 || per["c"] != 2 {
		t.Fatalf("offers per node = %v, want 2 each", per)
	}
	h.acceptAll(os)
	var last []Action
	for r := range 6 {
		last = h.step(Exited{Rank: r, Kind: ExitStatus})
	}
	d, ok := find[Done](last)
	if !ok || d.Status != 0 {
		t.Fatalf("want Done{0}, got %v", last)
	}
	if err := h.j.Step(Start{}); !errors.Is(err, ErrJobDone) {
		t.Fatalf("Step after done = %v, want ErrJobDone", err)
	}
}

func TestJobNothingBeforeStart(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 2}, node("a", 2, 2, 0, 0))
	if as := h.step(NodeUp{Node: node("b", 2, 2, 0, 0)}); len(offers(as)) != 0 {
		t.Fatalf("offers before Start: %v", as)
	}
}

func TestJobPendingThenElasticJoin(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 4, Need: Need{Mem: 512 * mib}}, node("a", 2, 2, 4096*mib, 4096*mib))
	as := h.step(Start{})
	if n := len(offers(as)); n != 2 {
		t.Fatalf("got %d offers on a 2-slot cluster, want 2", n)
	}
	p, ok := find[Progress](as)
	if !ok || p.Pending != 2 || p.Offered != 2 {
		t.Fatalf("progress = %+v", p)
	}
	h.acceptAll(offers(as))
	as = h.step(Accepted{}) // stale, ignored
	if len(as) != 0 {
		t.Fatalf("stale event produced %v", as)
	}
	want := "2/4 running, 2 pending: waiting for a node with 1 free slot and 512 MiB"
	if got := h.j.last.String(); got != want {
		t.Fatalf("progress line %q, want %q", got, want)
	}
	as = h.step(NodeUp{Node: node("b", 4, 4, 4096*mib, 4096*mib)})
	os := offers(as)
	if len(os) != 2 || os[0].Node != "b" || os[1].Node != "b" || os[0].Rank != 2 || os[1].Rank != 3 {
		t.Fatalf("after join, offers = %v", os)
	}
}

func TestJobImpossibleFailsAtOnceWithEveryReason(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 2, Need: Need{Mem: 64 << 30}},
		node("a", 2, 2, 1<<30, 1<<30), node("b", 2, 2, 2<<30, 2<<30))
	as := h.step(Start{})
	f, ok := find[Fail](as)
	if !ok {
		t.Fatalf("no Fail: %v", as)
	}
	for _, want := range []string{"a: rank needs 64 GiB of memory, node has 1 GiB in total", "b: rank needs 64 GiB of memory, node has 2 GiB in total"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q lacks %q", f.Reason, want)
		}
	}
	d, ok := find[Done](as)
	if !ok || d.Status != StatusFailed || len(offers(as)) != 0 {
		t.Fatalf("want Done{%d} and no offers, got %v", StatusFailed, as)
	}
}

func TestJobNoNodes(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 1})
	as := h.step(Start{})
	if f, ok := find[Fail](as); !ok || !strings.Contains(f.Reason, "no nodes") {
		t.Fatalf("got %v", as)
	}
}

func TestJobNodeDownRestartsElsewhere(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 2, MaxRestarts: 1}, node("a", 1, 1, 0, 0), node("b", 1, 1, 0, 0))
	where := h.acceptAll(offers(h.step(Start{})))
	dead := where[0]
	other := where[1]
	// the survivor frees up when rank 1 finishes; report it via NodeUp
	h.step(Exited{Rank: 1, Kind: ExitStatus, Report: Node{Name: other, Slots: 1, FreeSlots: 1, Seq: 5}})
	as := h.step(NodeDown{Name: dead})
	r, ok := find[Restart](as)
	if !ok || r.Rank != 0 || r.Incarnation != 1 {
		t.Fatalf("want Restart rank 0 inc 1, got %v", as)
	}
	os := offers(as)
	if len(os) != 1 || os[0].Node != other || os[0].Incarnation != 1 {
		t.Fatalf("offers after node down = %v", os)
	}
	// a late exit of the dead incarnation is ignored
	if as := h.step(Exited{Rank: 0, Incarnation: 0, Kind: ExitStatus, Status: 9}); len(as) != 0 {
		t.Fatalf("stale exit produced %v", as)
	}
	h.step(Accepted{Rank: 0, Incarnation: 1, Node: other})
	as = h.step(Exited{Rank: 0, Incarnation: 1, Kind: ExitStatus})
	if d, ok := find[Done](as); !ok || d.Status != 0 {
		t.Fatalf("got %v", as)
	}
	if got := h.j.Rank(0).Restarts; got != 1 {
		t.Fatalf("restarts = %d", got)
	}
}

func TestJobLostConnectionAvoidsNode(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 1, MaxRestarts: 3}, node("a", 4, 4, 0, 0), node("b", 1, 1, 0, 0))
	os := offers(h.step(Start{}))
	h.acceptAll(os)
	first := os[0].Node
	as := h.step(Exited{Rank: 0, Kind: ExitLost, Reason: "connection lost"})
	os = offers(as)
	if len(os) != 1 || os[0].Node == first {
		t.Fatalf("restart went to %v, want not %s", os, first)
	}
}

func TestJobRestartsExhausted(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 1, MaxRestarts: 1}, node("a", 1, 1, 0, 0), node("b", 1, 1, 0, 0), node("c", 1, 1, 0, 0))
	h.acceptAll(offers(h.step(Start{})))
	as := h.step(Exited{Rank: 0, Kind: ExitSignaled, Status: 137, Reason: "killed by signal 9"})
	os := offers(as)
	if len(os) != 1 {
		t.Fatalf("want a restart offer, got %v", as)
	}
	h.acceptAll(os)
	as = h.step(Exited{Rank: 0, Incarnation: 1, Kind: ExitSignaled, Status: 137, Reason: "killed by signal 9"})
	d, ok := find[Done](as)
	if !ok || d.Status != 137 || !strings.Contains(d.Reason, "no restarts left") {
		t.Fatalf("got %v", as)
	}
}

func TestJobFailureStopsOthersAndLowestRankWins(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 4}, node("a", 3, 3, 0, 0))
	os := offers(h.step(Start{}))
	h.acceptAll(os) // ranks 0..2 running, 3 pending
	as := h.step(Exited{Rank: 2, Kind: ExitStatus, Status: 3, Reason: "exit status 3"})
	s, ok := find[Stop](as)
	if !ok || s.Signal != SignalTerm || fmt.Sprint(s.Ranks) != "[0 1]" {
		t.Fatalf("want Stop of ranks 0,1 with SIGTERM, got %v", as)
	}
	if h.j.Rank(3).State != RankStopped {
		t.Fatalf("pending rank 3 is %v, want stopped", h.j.Rank(3).State)
	}
	// rank 1 fails on its own at the same time; rank 0 ends from our SIGTERM.
	h.step(Exited{Rank: 1, Kind: ExitLimit, Status: 143, Reason: "time limit"})
	as = h.step(Exited{Rank: 0, Kind: ExitSignaled, Status: 143})
	d, ok := find[Done](as)
	// rank 1 was stopped by us before it reported, so it does not count: rank 2 wins.
	if !ok || d.Status != 3 {
		t.Fatalf("got %v, want Done{3}", as)
	}
}

// The status rule itself: the lowest-numbered rank that failed on its own
// wins, whatever the order of the failures; stopped ranks never count.
func TestJobStatusRule(t *testing.T) {
	j, _ := NewJob(JobConfig{Size: 4})
	j.ranks[0] = RankInfo{State: RankStopped, Status: 143}
	j.ranks[1] = RankInfo{Rank: 1, State: RankFailed, Status: 4, Reason: "exit status 4"}
	j.ranks[2] = RankInfo{Rank: 2, State: RankFailed, Status: 5}
	j.ranks[3] = RankInfo{State: RankSucceeded}
	if st, why := j.status(); st != 4 || !strings.Contains(why, "rank 1 failed: exit status 4") {
		t.Fatalf("status = %d %q, want rank 1's 4", st, why)
	}
	j.ranks[1].State = RankStopped
	j.ranks[2].State = RankStopped
	j.interruptSig = 15
	if st, _ := j.status(); st != 143 {
		t.Fatalf("interrupted status = %d, want 143", st)
	}
	j.failReason = "no node"
	if st, _ := j.status(); st != StatusFailed {
		t.Fatalf("failed status = %d, want %d", st, StatusFailed)
	}
}

func TestJobInterrupt(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 3}, node("a", 2, 2, 0, 0))
	h.acceptAll(offers(h.step(Start{})))
	as := h.step(Interrupt{Signal: 2})
	s, ok := find[Stop](as)
	if !ok || s.Signal != 2 || len(s.Ranks) != 2 {
		t.Fatalf("got %v", as)
	}
	as = h.step(Interrupt{Signal: 2, Force: true})
	if s, ok := find[Stop](as); !ok || s.Signal != SignalKill {
		t.Fatalf("second interrupt: %v", as)
	}
	h.step(Exited{Rank: 0, Kind: ExitSignaled, Status: 130})
	as = h.step(Exited{Rank: 1, Kind: ExitSignaled, Status: 137})
	if d, ok := find[Done](as); !ok || d.Status != 130 {
		t.Fatalf("got %v, want Done{130}", as)
	}
	if h.j.Rank(2).State != RankStopped {
		t.Fatalf("pending rank not cancelled: %v", h.j.Rank(2))
	}
}

func TestJobDeclineSkipsNodeUntilItChanges(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 1}, Node{Name: "a", Slots: 2, FreeSlots: 2, Seq: 1})
	os := offers(h.step(Start{}))
	as := h.step(Declined{Rank: 0, Node: "a", Reason: "no free slot (2 of 2 in use)",
		Report: Node{Name: "a", Slots: 2, FreeSlots: 1, Seq: 3}})
	if len(os) != 1 || len(offers(as)) != 0 {
		t.Fatalf("re-offered to the node that just declined: %v", as)
	}
	if p, _ := find[Progress](as); p.Pending != 1 {
		t.Fatalf("progress %+v", p)
	}
	if as := h.step(NodeUp{Node: Node{Name: "a", Slots: 2, FreeSlots: 2, Seq: 2}}); len(offers(as)) != 0 {
		t.Fatalf("stale report re-opened the node: %v", as)
	}
	if as := h.step(NodeUp{Node: Node{Name: "a", Slots: 2, FreeSlots: 2, Seq: 4}}); len(offers(as)) != 1 {
		t.Fatalf("fresh report did not re-offer: %v", as)
	}
}

func TestJobPermanentDeclineEverywhereFails(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 1, Need: Need{Time: time.Hour}}, node("a", 1, 1, 0, 0))
	os := offers(h.step(Start{}))
	as := h.step(Declined{Rank: 0, Node: os[0].Node, Reason: "binary does not run here", Permanent: true})
	f, ok := find[Fail](as)
	if !ok || !strings.Contains(f.Reason, "a: binary does not run here") {
		t.Fatalf("got %v", as)
	}
}

func TestJobConfigValidate(t *testing.T) {
	for _, c := range []JobConfig{{Size: 0}, {Size: 2, Min: 3}, {Size: 1, MaxRestarts: -1}, {Size: 1, Need: Need{Mem: -1}}} {
		if _, err := NewJob(c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewJob(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
	j, err := NewJob(JobConfig{Size: 3})
	if err != nil || j.Config().Min != 3 {
		t.Fatalf("Min default: %v %+v", err, j.Config())
	}
	if err := j.Step(nil); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("Step(nil) = %v", err)
	}
}

func TestJobOversubscribe(t *testing.T) {
	h := newHarness(t, JobConfig{Size: 4, Need: Need{Oversubscribe: true}}, node("a", 1, 1, 0, 0))
	if os := offers(h.step(Start{})); len(os) != 4 {
		t.Fatalf("oversubscribed offers = %d, want 4", len(os))
	}
}
