package sched

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"time"
)

// Node is what a locator knows about one node: its capacity, what is free now
// and its limits. Seq orders reports about the same node: a report with a
// lower Seq than the one already held is stale.
type Node struct {
	Name      string
	Slots     int           // total rank slots
	FreeSlots int           // slots not reserved now
	Mem       int64         // total memory for ranks, bytes; 0 means unknown (no memory check)
	FreeMem   int64         // memory not reserved now, bytes
	MaxTime   time.Duration // longest time limit the node grants; 0 means no limit
	Seq       uint64        // resource version, increases with every change
}

// Need is what one rank asks for.
type Need struct {
	Mem           int64         // bytes reserved and enforced; 0 reserves nothing
	Time          time.Duration // time limit; 0 means none asked (the node's MaxTime applies)
	Oversubscribe bool          // take a node even when its slots are full
}

// Unfit returns why n could never take a rank with need, or "" when it could
// (given enough free resources). A non-empty answer is permanent for as long
// as the node keeps its capacity.
func (n Node) Unfit(need Need) string {
	switch {
	case n.Slots <= 0 && !need.Oversubscribe:
		return "node has no rank slots"
	case n.Mem > 0 && need.Mem > n.Mem:
		return fmt.Sprintf("rank needs %s of memory, node has %s in total", FormatBytes(need.Mem), FormatBytes(n.Mem))
	case n.MaxTime > 0 && need.Time > n.MaxTime:
		return fmt.Sprintf("rank needs %s, node allows at most %s", need.Time, n.MaxTime)
	}
	return ""
}

// Busy returns why n cannot take a rank with need right now, or "" when it
// can. It assumes Unfit(need) is "".
func (n Node) Busy(need Need) string {
	switch {
	case n.FreeSlots < 1 && !need.Oversubscribe:
		return fmt.Sprintf("no free slot (%d of %d in use)", n.Slots-n.FreeSlots, n.Slots)
	case n.Mem > 0 && need.Mem > n.FreeMem:
		return fmt.Sprintf("only %s of memory free, rank needs %s", FormatBytes(n.FreeMem), FormatBytes(need.Mem))
	}
	return ""
}

// Admit is the servent's decision on an offer, given the node's state with
// what is already reserved subtracted. It returns "" to accept, or the reason
// to decline and whether that reason is permanent.
func Admit(n Node, need Need) (reason string, permanent bool) {
	if r := n.Unfit(need); r != "" {
		return r, true
	}
	return n.Busy(need), false
}

// Reserve returns n with one rank of need reserved (Seq advanced).
func (n Node) Reserve(need Need) Node {
	n.FreeSlots--
	n.FreeMem -= need.Mem
	n.Seq++
	return n
}

// Release returns n with one rank of need given back (Seq advanced).
func (n Node) Release(need Need) Node {
	n.FreeSlots++
	n.FreeMem += need.Mem
	n.Seq++
	return n
}

// Candidates is the locator's answer: the nodes that could take a rank with
// need now, best fit first. Best fit means the least memory left over after
// placing the rank, then the fewest free slots left, then the name, so small
// ranks fill partly used nodes and leave empty ones for large ranks. The input
// is not modified.
func Candidates(nodes []Node, need Need) []Node {
	var out []Node
	for _, n := range nodes {
		if n.Unfit(need) == "" && n.Busy(need) == "" {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return compareFit(a, b, need) })
	return out
}

func compareFit(a, b Node, need Need) int {
	if c := cmp.Compare(leftover(a, need), leftover(b, need)); c != 0 {
		return c
	}
	// With oversubscription a node with free slots still beats a full one.
	if af, bf := a.FreeSlots > 0, b.FreeSlots > 0; af != bf {
		if af {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.FreeSlots, b.FreeSlots); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

func leftover(n Node, need Need) int64 {
	if n.Mem == 0 {
		return 0
	}
	return n.FreeMem - need.Mem
}

// Rendezvous returns the name among names with the highest rendezvous
// (highest random weight) hash for key, or "" when names is empty. Every
// caller with the same set of names picks the same one, and removing a name
// only moves the keys that chose it.
func Rendezvous(key string, names []string) string {
	var best string
	var bestW uint64
	for _, name := range names {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(name))
		w := mix(h.Sum64())
		if best == "" || w > bestW || (w == bestW && name < best) {
			best, bestW = name, w
		}
	}
	return best
}

// mix is the splitmix64 finaliser, so similar inputs spread evenly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// FormatBytes renders n bytes in binary units: "512 MiB", "1.5 GiB", "100 B".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
