package sched

import (
	"fmt"
	"slices"
	"strings"
)

// JobConfig describes a job to place.
type JobConfig struct {
	Size        int  // number of ranks, >= 1
	Min         int  // ranks needed before collective work; 0 means Size
	Need        Need // per rank
	MaxRestarts int  // restarts allowed per rank; 0 means none
}

// Validate checks c and fills documented zero values.
func (c *JobConfig) Validate() error {
	switch {
	case c.Size < 1:
		return fmt.Errorf("%w: size %d, want at least 1", ErrBadConfig, c.Size)
	case c.Min < 0 || c.Min > c.Size:
		return fmt.Errorf("%w: min %d, want 1..%d", ErrBadConfig, c.Min, c.Size)
	case c.MaxRestarts < 0:
		return fmt.Errorf("%w: max restarts %d is negative", ErrBadConfig, c.MaxRestarts)
	case c.Need.Mem < 0 || c.Need.Time < 0:
		return fmt.Errorf("%w: negative memory or time", ErrBadConfig)
	}
	if c.Min == 0 {
		c.Min = c.Size
	}
	return nil
}

// RankState is where a rank is in its life.
type RankState int

const (
	RankPending   RankState = iota // waiting for a node
	RankOffered                    // offered to a node, no answer yet
	RankRunning                    // accepted and started
	RankSucceeded                  // exited 0
	RankFailed                     // failed on its own, final
	RankStopped                    // stopped or cancelled by the job
)

var rankStateNames = [...]string{"pending", "offered", "running", "succeeded", "failed", "stopped"}

func (s RankState) String() string {
	if int(s) < len(rankStateNames) {
		return rankStateNames[s]
	}
	return fmt.Sprintf("RankState(%d)", int(s))
}

func (s RankState) final() bool { return s >= RankSucceeded }

// RankInfo is the job's record of one rank.
type RankInfo struct {
	Rank, Incarnation, Restarts int
	State                       RankState
	Node                        string // node of the current incarnation, if any
	Status                      int    // exit status once final
	Reason                      string // why it failed, stopped, or last declined
	stopSent                    bool
}

type nodeView struct {
	Node
	inflight    int    // offers of this job not answered yet
	lost        bool   // a rank's connection to it broke
	permanent   string // permanent decline reason
	declined    bool   // declined at declinedSeq; skip until Seq moves on
	declinedSeq uint64
}

// Job is the state machine of one job. See the package doc.
type Job struct {
	cfg          JobConfig
	ranks        []RankInfo
	nodes        map[string]*nodeView
	started      bool
	stopping     bool
	stopSig      int
	interruptSig int
	failReason   string
	done         bool
	out          []Action
	last         Progress
}

// NewJob returns a job with every rank pending. It returns ErrBadConfig for
// an invalid cfg.
func NewJob(cfg JobConfig) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	j := &Job{cfg: cfg, nodes: map[string]*nodeView{}}
	j.ranks = make([]RankInfo, cfg.Size)
	for i := range j.ranks {
		j.ranks[i].Rank = i
	}
	return j, nil
}

// Config returns the validated configuration.
func (j *Job) Config() JobConfig { return j.cfg }

// Ready returns the actions produced since the last call and forgets them.
func (j *Job) Ready() []Action {
	out := j.out
	j.out = nil
	return out
}

// Ranks returns a copy of every rank's record.
func (j *Job) Ranks() []RankInfo { return slices.Clone(j.ranks) }

// Rank returns a copy of rank r's record.
func (j *Job) Rank(r int) RankInfo { return j.ranks[r] }

// Step applies one event. It returns ErrJobDone after Done and
// ErrUnknownEvent for an unknown event type; stale events (an incarnation
// that is no longer current, a report about an unknown node) are ignored.
func (j *Job) Step(ev Event) error {
	if j.done {
		return ErrJobDone
	}
	switch e := ev.(type) {
	case Start:
		j.started = true
	case NodeUp:
		j.nodeUp(e.Node)
	case NodeDown:
		j.nodeDown(e.Name)
	case Accepted:
		j.accepted(e)
	case Declined:
		j.declined(e)
	case Exited:
		j.exited(e)
	case Interrupt:
		j.interrupt(e)
	default:
		return fmt.Errorf("%w: %T", ErrUnknownEvent, ev)
	}
	j.settle()
	return nil
}

func (j *Job) emit(a Action) { j.out = append(j.out, a) }

func (j *Job) settle() {
	j.checkImpossible()
	j.place()
	j.maybeDone()
	j.progress()
}

func (j *Job) nodeUp(n Node) {
	if v, ok := j.nodes[n.Name]; ok {
		if n.Seq >= v.Seq {
			v.Node = n
		}
		return
	}
	j.nodes[n.Name] = &nodeView{Node: n}
}

func (j *Job) nodeDown(name string) {
	if _, ok := j.nodes[name]; !ok {
		return
	}
	delete(j.nodes, name)
	for i := range j.ranks {
		r := &j.ranks[i]
		if (r.State == RankOffered || r.State == RankRunning) && r.Node == name {
			j.lose(r, fmt.Sprintf("node %s lost", name), StatusFailed)
		}
	}
}

// current returns the rank an event is about, or nil when the event is stale.
func (j *Job) current(rank, inc int, states ...RankState) *RankInfo {
	if rank < 0 || rank >= len(j.ranks) {
		return nil
	}
	r := &j.ranks[rank]
	if r.Incarnation != inc || !slices.Contains(states, r.State) {
		return nil
	}
	return r
}

// report applies a node's own resource report. Without one (rep.Name empty)
// the job adjusts its view by delta ranks itself (-1 reserve, +1 release) so
// it does not offer a slot it just filled; the next report corrects it.
func (j *Job) report(name string, rep Node, delta int) {
	v, ok := j.nodes[name]
	if !ok {
		return
	}
	if rep.Name == "" {
		v.FreeSlots += delta
		v.FreeMem += int64(delta) * j.cfg.Need.Mem
		return
	}
	if rep.Name == name && rep.Seq >= v.Seq {
		v.Node = rep
	}
}

func (j *Job) answered(r *RankInfo) {
	if v, ok := j.nodes[r.Node]; ok && v.inflight > 0 {
		v.inflight--
	}
}

func (j *Job) accepted(e Accepted) {
	r := j.current(e.Rank, e.Incarnation, RankOffered)
	if r == nil || r.Node != e.Node {
		return
	}
	j.answered(r)
	j.report(e.Node, e.Report, -1)
	r.State = RankRunning
	if j.stopping {
		r.stopSent = true
		j.emit(Stop{Ranks: []int{r.Rank}, Signal: j.stopSig, Reason: "job is stopping"})
	}
}

func (j *Job) declined(e Declined) {
	r := j.current(e.Rank, e.Incarnation, RankOffered)
	if r == nil || r.Node != e.Node {
		return
	}
	j.answered(r)
	j.report(e.Node, e.Report, 0)
	if v, ok := j.nodes[e.Node]; ok {
		if e.Permanent {
			v.permanent = e.Reason
		} else {
			v.declined, v.declinedSeq = true, v.Seq
		}
	}
	r.Reason = fmt.Sprintf("%s declined: %s", e.Node, e.Reason)
	r.Node = ""
	r.State = RankPending
	if j.stopping {
		r.State = RankStopped
	}
}

func (j *Job) exited(e Exited) {
	r := j.current(e.Rank, e.Incarnation, RankOffered, RankRunning)
	if r == nil {
		return
	}
	delta := 1
	if r.State == RankOffered {
		j.answered(r)
		delta = 0
	}
	j.report(r.Node, e.Report, delta)
	switch {
	case e.Kind == ExitStatus && e.Status == 0:
		r.State, r.Status, r.Reason = RankSucceeded, 0, ""
	case r.stopSent || e.Kind == ExitStopped:
		r.State, r.Status, r.Reason = RankStopped, e.Status, e.Reason
	case e.Kind == ExitLost:
		if v, ok := j.nodes[r.Node]; ok {
			v.lost = true
		}
		j.lose(r, e.Reason, StatusFailed)
	case e.Kind == ExitSignaled:
		j.lose(r, e.Reason, e.Status)
	default:
		j.fail(r, e.Status, e.Reason)
	}
}

// lose restarts r after a restartable end, or fails it when the budget is spent.
func (j *Job) lose(r *RankInfo, reason string, status int) {
	if j.stopping {
		r.State, r.Status, r.Reason = RankStopped, status, reason
		return
	}
	if r.Restarts >= j.cfg.MaxRestarts {
		j.fail(r, status, fmt.Sprintf("%s; no restarts left (max restarts %d)", reason, j.cfg.MaxRestarts))
		return
	}
	r.Restarts++
	r.Incarnation++
	r.State, r.Node, r.Reason = RankPending, "", reason
	j.emit(Restart{Rank: r.Rank, Incarnation: r.Incarnation, Reason: reason})
}

func (j *Job) fail(r *RankInfo, status int, reason string) {
	r.State, r.Status, r.Reason = RankFailed, status, reason
	j.stop(SignalTerm, fmt.Sprintf("rank %d failed: %s", r.Rank, reason))
}

// stop cancels pending ranks and signals active ones, once per signal.
func (j *Job) stop(sig int, reason string) {
	if j.stopping && (j.stopSig == sig || j.stopSig == SignalKill) {
		return
	}
	j.stopping, j.stopSig = true, sig
	var active []int
	for i := range j.ranks {
		r := &j.ranks[i]
		switch r.State {
		case RankPending:
			r.State, r.Reason = RankStopped, "cancelled: "+reason
		case RankOffered, RankRunning:
			r.stopSent = true
			active = append(active, r.Rank)
		}
	}
	if len(active) > 0 {
		j.emit(Stop{Ranks: active, Signal: sig, Reason: reason})
	}
}

func (j *Job) interrupt(e Interrupt) {
	sig := e.Signal
	if e.Force {
		sig = SignalKill
	}
	if j.interruptSig == 0 {
		j.interruptSig = e.Signal
	}
	j.stop(sig, fmt.Sprintf("interrupted (signal %d)", e.Signal))
}

// usable reports whether v could ever take a rank of this job.
func (j *Job) usable(v *nodeView) bool {
	return !v.lost && v.permanent == "" && v.Unfit(j.cfg.Need) == ""
}

func (j *Job) checkImpossible() {
	if !j.started || j.stopping || j.count(RankPending) == 0 {
		return
	}
	names := j.nodeNames()
	for _, name := range names {
		if j.usable(j.nodes[name]) {
			return
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no node can run a rank needing %s", j.describeNeed())
	if len(names) == 0 {
		b.WriteString(": there are no nodes in the cluster")
	}
	for _, name := range names {
		fmt.Fprintf(&b, "\n  %s: %s", name, j.whyUnusable(j.nodes[name]))
	}
	j.failReason = b.String()
	j.emit(Fail{Reason: j.failReason})
	j.stop(SignalTerm, "job failed")
}

func (j *Job) whyUnusable(v *nodeView) string {
	switch {
	case v.permanent != "":
		return v.permanent
	case v.lost:
		return "connection to the node was lost"
	}
	return v.Unfit(j.cfg.Need)
}

func (j *Job) nodeNames() []string {
	names := make([]string, 0, len(j.nodes))
	for name := range j.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// available returns the nodes that can take one more rank now, best first,
// with this job's unanswered offers subtracted.
func (j *Job) available() []Node {
	var nodes []Node
	for _, v := range j.nodes {
		if !j.usable(v) || (v.declined && v.Seq <= v.declinedSeq) {
			continue
		}
		n := v.Node
		n.FreeSlots -= v.inflight
		n.FreeMem -= int64(v.inflight) * j.cfg.Need.Mem
		nodes = append(nodes, n)
	}
	return Candidates(nodes, j.cfg.Need)
}

func (j *Job) place() {
	if !j.started || j.stopping {
		return
	}
	for i := range j.ranks {
		r := &j.ranks[i]
		if r.State != RankPending {
			continue
		}
		cands := j.available()
		if len(cands) == 0 {
			return
		}
		name := cands[0].Name
		j.nodes[name].inflight++
		r.State, r.Node = RankOffered, name
		j.emit(Offer{Rank: r.Rank, Incarnation: r.Incarnation, Node: name})
	}
}

func (j *Job) count(s RankState) int {
	n := 0
	for _, r := range j.ranks {
		if r.State == s {
			n++
		}
	}
	return n
}

func (j *Job) maybeDone() {
	if !j.started {
		return
	}
	for _, r := range j.ranks { // offered and running ranks are not final
		if !r.State.final() {
			return
		}
	}
	status, reason := j.status()
	j.done = true
	j.emit(Done{Status: status, Reason: reason})
}

func (j *Job) status() (int, string) {
	for _, r := range j.ranks {
		if r.State == RankFailed {
			return r.Status, fmt.Sprintf("rank %d failed: %s", r.Rank, r.Reason)
		}
	}
	switch {
	case j.failReason != "":
		return StatusFailed, j.failReason
	case j.interruptSig != 0:
		return 128 + j.interruptSig, fmt.Sprintf("interrupted (signal %d)", j.interruptSig)
	}
	return 0, ""
}

func (j *Job) describeNeed() string {
	s := "1 free slot"
	if j.cfg.Need.Oversubscribe {
		s = "any slot"
	}
	if j.cfg.Need.Mem > 0 {
		s += " and " + FormatBytes(j.cfg.Need.Mem)
	}
	if j.cfg.Need.Time > 0 {
		s += " for " + j.cfg.Need.Time.String()
	}
	return s
}

func (j *Job) progress() {
	if !j.started {
		return
	}
	p := Progress{
		Size:    j.cfg.Size,
		Running: j.count(RankRunning),
		Pending: j.count(RankPending),
		Offered: j.count(RankOffered),
	}
	p.Finished = p.Size - p.Running - p.Pending - p.Offered
	if p.Pending > 0 {
		p.Waiting = "waiting for a node with " + j.describeNeed()
	}
	if p != j.last {
		j.last = p
		j.emit(p)
	}
}

// String renders p the way pirun shows it: "6/8 running, 2 pending: waiting
// for a node with 1 free slot and 512 MiB".
func (p Progress) String() string {
	s := fmt.Sprintf("%d/%d running", p.Running, p.Size)
	if p.Offered > 0 {
		s += fmt.Sprintf(", %d starting", p.Offered)
	}
	if p.Finished > 0 {
		s += fmt.Sprintf(", %d finished", p.Finished)
	}
	if p.Pending > 0 {
		s += fmt.Sprintf(", %d pending: %s", p.Pending, p.Waiting)
	}
	return s
}
