package launcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/pispace/pispace/sched"
)

// RunConfig configures one job run by the initiator. Zero values are
// documented per field.
type RunConfig struct {
	Size          int           // ranks, >= 1
	Min           int           // ranks needed before collective work; 0 means Size
	Mem           int64         // memory per rank, reserved and enforced; 0 means none
	Time          time.Duration // time limit per rank; 0 means none (a node's max time applies)
	Join          []string      // cluster seeds; empty starts the embedded cluster
	Env           []string      // NAME=VALUE exported to every rank
	MaxRestarts   int           // restarts per rank after node loss or a foreign signal
	Oversubscribe bool          // place ranks beyond free slots
	Program       string        // executable, name on PATH, or Go main package directory
	Args          []string      // program arguments
	Dir           string        // working directory offered to ranks; "" means the current one
	Key           []byte        // cluster key; nil means plaintext
	Profile       string        // membership profile; "" means ProfileAuto
	Bind          string        // initiator's gossip bind; "" picks loopback or 0.0.0.0 from the seeds
	Stdin         io.Reader     // forwarded to rank 0; nil means none
	Stdout        io.Writer     // rank stdout lines; nil means discard
	Stderr        io.Writer     // rank stderr lines and pirun's messages; nil means discard
	Terminal      bool          // draw progress as one rewritten line
	Signals       <-chan os.Signal
	Logger        *slog.Logger // nil means discard
	Embedded      EmbeddedConfig
	// Hooks, if set, observes the run (benchmarks): called from the driver
	// goroutine, must not block.
	Hooks Hooks
}

// Hooks lets a caller observe a run's milestones.
type Hooks struct {
	Ready        func(jobID string) // membership loaded, placement starts
	NodeUp       func(name string)  // a node appeared in the view
	RankRunning  func(rank, incarnation int, node string)
	RankFinished func(rank int, res RankResult)
}

// JobReport is the outcome of a job: its status and per-rank metrics.
type JobReport struct {
	Job    string        `json:"job"`
	Status int           `json:"status"`
	Reason string        `json:"reason,omitempty"`
	Wall   time.Duration `json:"wall_ns"`
	Ranks  []RankReport  `json:"ranks"`
}

// RankReport is one rank's metrics (of its last incarnation).
type RankReport struct {
	Rank        int           `json:"rank"`
	Node        string        `json:"node"`
	Wall        time.Duration `json:"wall_ns"`
	CPU         time.Duration `json:"cpu_ns"`
	PeakMem     int64         `json:"peak_mem_bytes"`
	Exit        int           `json:"exit"`
	Kind        string        `json:"kind,omitempty"`
	Restarts    int           `json:"restarts"`
	Incarnation int           `json:"incarnation"`
	State       string        `json:"state"`
	Reason      string        `json:"reason,omitempty"`
}

// initiator drives one sched.Job: it owns the job, the membership view and
// the attempts. Only the driver goroutine touches its fields, except where
// noted.
type initiator struct {
	cfg         RunConfig
	log         *slog.Logger
	jobID       string
	job         *sched.Job
	member      *member
	prog        program
	comm        string
	nodes       map[string]NodeInfo
	attempts    map[int]*attempt
	reports     []RankReport
	out         *output
	events      chan attemptMsg // attempt -> driver
	quit        chan struct{}   // closed when the driver stops listening
	wg          sync.WaitGroup
	stdinOn     atomic.Bool // rank 0's stdin pump started
	interrupted int
}

// Run runs one job to its end and returns its report. The error is for
// failures before the job could start: ErrUsage (bad config, no program),
// ErrNoKey (cluster key mismatch), ErrJoin (no seed answered), or an error
// starting the embedded cluster. A job that ran and failed returns a report
// with a non-zero Status and a nil error.
func Run(ctx context.Context, cfg RunConfig) (JobReport, error) {
	start := time.Now()
	in, cleanup, err := newInitiator(ctx, cfg)
	if err != nil {
		return JobReport{}, err
	}
	defer cleanup()
	done := in.loop(ctx)
	rep := in.report(done)
	rep.Wall = time.Since(start)
	return rep, nil
}

func fillRunConfig(c *RunConfig) error {
	if c.Size < 1 {
		return fmt.Errorf("%w: -n must be at least 1", ErrUsage)
	}
	if c.Program == "" {
		return fmt.Errorf("%w: no program given", ErrUsage)
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dir == "" {
		c.Dir, _ = os.Getwd()
	}
	return nil
}

// newInitiator prepares the program, the cluster (embedded when no seeds)
// and the membership view. cleanup undoes all of it.
func newInitiator(ctx context.Context, cfg RunConfig) (_ *initiator, _ func(), err error) {
	if err := fillRunConfig(&cfg); err != nil {
		return nil, nil, err
	}
	job, err := sched.NewJob(sched.JobConfig{Size: cfg.Size, Min: cfg.Min, MaxRestarts: cfg.MaxRestarts,
		Need: sched.Need{Mem: cfg.Mem, Time: cfg.Time, Oversubscribe: cfg.Oversubscribe}})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, nil, err
	}
	in := &initiator{cfg: cfg, log: cfg.Logger, jobID: id.String(), job: job, nodes: map[string]NodeInfo{},
		attempts: map[int]*attempt{}, reports: make([]RankReport, cfg.Size),
		out:    &output{stdout: cfg.Stdout, stderr: cfg.Stderr, terminal: cfg.Terminal},
		events: make(chan attemptMsg, 64), quit: make(chan struct{})}
	var undo []func()
	cleanup := func() {
		for _, f := range slices.Backward(undo) {
			f()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if in.prog, err = resolveProgram(ctx, cfg.Program, cfg.Stderr); err != nil {
		return nil, nil, err
	}
	seeds, leave := cfg.Join, time.Second
	if len(seeds) == 0 {
		cl, err := StartEmbedded(ctx, cfg.Embedded.sized(cfg.Size))
		if err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() { cl.Close() })
		seeds, leave = cl.Seeds(), 0
		in.cfg.Profile = ProfileTuned
	}
	if in.member, err = joinAsClient(ctx, seeds, in.cfg.Bind, in.cfg.Profile, in.cfg.Key, in.log, true); err != nil {
		return nil, nil, err
	}
	// A client's leave need not linger: no node depends on it.
	undo = append(undo, func() { in.member.leave(leave, 0) })
	return in, cleanup, nil
}

// joinAsClient joins seeds as a client member (runs nothing). An empty bind
// picks 127.0.0.1:0 for loopback seeds and 0.0.0.0:0 otherwise.
func joinAsClient(ctx context.Context, seeds []string, bind, profile string, key []byte, log *slog.Logger, events bool) (*member, error) {
	if bind == "" {
		bind = "0.0.0.0:0"
		if host, _, err := net.SplitHostPort(seeds[0]); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				bind = "127.0.0.1:0"
			}
		}
	}
	meta, err := encodeMeta(NodeInfo{Role: roleClient})
	if err != nil {
		return nil, err
	}
	name, err := memberName("pirun")
	if err != nil {
		return nil, err
	}
	m, err := newMember(memberOpts{Name: name, Profile: profile, Bind: bind, Key: key,
		Events: events, Logger: log, Meta: meta})
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.join(jctx, seeds); err != nil {
		m.kill()
		return nil, err
	}
	return m, nil
}

// loop is the driver: it feeds the job until it is done and returns Done.
func (in *initiator) loop(ctx context.Context) sched.Done {
	defer in.stopAll()
	for _, info := range in.member.members(roleNode) {
		in.nodes[info.Name] = info
		in.step(sched.NodeUp{Node: info.Sched()})
	}
	in.comm = in.pickComm()
	if in.cfg.Hooks.Ready != nil {
		in.cfg.Hooks.Ready(in.jobID)
	}
	if d, ok := in.step(sched.Start{}); ok {
		return d
	}
	ctxDone := ctx.Done()
	for {
		var ev sched.Event
		select {
		case ne := <-in.member.events:
			if ev = in.membership(ne); ev == nil {
				continue
			}
		case m := <-in.events:
			if ev = in.fromAttempt(m); ev == nil {
				continue
			}
		case sig := <-in.cfg.Signals:
			ev = in.signal(sig)
		case <-ctxDone:
			ctxDone = nil
			in.out.say("cancelled: killing ranks")
			ev = sched.Interrupt{Signal: int(sigNum(os.Interrupt)), Force: true}
		}
		if d, ok := in.step(ev); ok {
			return d
		}
	}
}

// pickComm chooses the job's space server: the rendezvous of the job id over
// the nodes alive at job start.
func (in *initiator) pickComm() string {
	var names []string
	for name, info := range in.nodes {
		if info.Comm != "" {
			names = append(names, name)
		}
	}
	return in.nodes[sched.Rendezvous(in.jobID, names)].Comm
}

func (in *initiator) membership(ne memberEvent) sched.Event {
	info := ne.info
	if info.Role != roleNode {
		return nil
	}
	switch {
	case ne.leave:
		delete(in.nodes, info.Name)
		return sched.NodeDown{Name: info.Name}
	default:
		if _, known := in.nodes[info.Name]; !known && in.cfg.Hooks.NodeUp != nil {
			in.cfg.Hooks.NodeUp(info.Name)
		}
		in.nodes[info.Name] = info
		return sched.NodeUp{Node: info.Sched()}
	}
}

// sigNum returns the number of a signal (syscall.Signal on Unix).
func sigNum(s os.Signal) syscall.Signal {
	if n, ok := s.(syscall.Signal); ok {
		return n
	}
	return syscall.SIGINT
}

func (in *initiator) signal(sig os.Signal) sched.Event {
	in.interrupted++
	if in.interrupted == 1 {
		in.out.say("%s: stopping ranks (again to kill)", sig)
		return sched.Interrupt{Signal: int(sigNum(sig))}
	}
	in.out.say("%s again: killing ranks", sig)
	return sched.Interrupt{Signal: int(sigNum(sig)), Force: true}
}

// step feeds one event and executes the resulting actions; ok is true with
// the job's Done.
func (in *initiator) step(ev sched.Event) (sched.Done, bool) {
	if err := in.job.Step(ev); err != nil {
		in.log.Warn("initiator: step", "err", err)
	}
	for _, a := range in.job.Ready() {
		if d, ok := in.act(a); ok {
			return d, true
		}
	}
	return sched.Done{}, false
}

func (in *initiator) act(a sched.Action) (sched.Done, bool) {
	switch a := a.(type) {
	case sched.Offer:
		in.offer(a)
	case sched.Restart:
		if old := in.attempts[a.Rank]; old != nil {
			old.cancel() // a node declared dead may still hold the old incarnation
		}
		in.out.say("rank %d: %s; restarting (incarnation %d)", a.Rank, a.Reason, a.Incarnation)
	case sched.Stop:
		for _, r := range a.Ranks {
			if at := in.attempts[r]; at != nil {
				in.stopAttempt(at, a.Signal)
			}
		}
	case sched.Fail:
		in.out.say("%s", a.Reason)
	case sched.Progress:
		in.out.show(a)
	case sched.Done:
		in.out.done()
		return a, true
	}
	return sched.Done{}, false
}

func (in *initiator) offer(o sched.Offer) {
	info, ok := in.nodes[o.Node]
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	at := &attempt{in: in, rank: o.Rank, inc: o.Incarnation, node: info, ctx: ctx, cancel: cancel}
	in.attempts[o.Rank] = at
	in.wg.Add(1)
	go func() { defer in.wg.Done(); at.run() }()
}

// stopAttempt signals a running rank, or withdraws an offer; SIGKILL closes
// the connection, which makes the servent kill the rank's process group.
func (in *initiator) stopAttempt(at *attempt, sig int) {
	at.stopped.Store(true)
	if sig == sched.SignalKill || !at.started.Load() {
		at.cancel()
		return
	}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if err := at.send(ctl{Op: opSignal, Signal: sig}); err != nil {
			at.cancel()
		}
	}()
}

// attemptMsg is an attempt's news for the driver: a job event and, when the
// rank ended, its result.
type attemptMsg struct {
	at  *attempt
	ev  sched.Event
	res *RankResult
}

// post hands an attempt's event to the driver.
func (in *initiator) post(m attemptMsg) {
	select {
	case in.events <- m:
	case <-in.quit:
	}
}

// fromAttempt records metrics and tells the user about abnormal ends. News
// from an attempt that is no longer its rank's current one is dropped: a
// rank re-offered after a decline keeps its incarnation, so the job alone
// could not tell the old attempt's late news from the new one's.
func (in *initiator) fromAttempt(m attemptMsg) sched.Event {
	at := m.at
	if in.attempts[at.rank] != at {
		return nil
	}
	if _, ok := m.ev.(sched.Accepted); ok && in.cfg.Hooks.RankRunning != nil {
		in.cfg.Hooks.RankRunning(at.rank, at.inc, at.node.Name)
	}
	if m.res == nil {
		return m.ev
	}
	res := *m.res
	in.reports[at.rank] = RankReport{Node: at.node.Name, Wall: res.Wall, CPU: res.CPU, PeakMem: res.PeakMem,
		Exit: res.Status, Kind: res.Kind}
	if in.cfg.Hooks.RankFinished != nil {
		in.cfg.Hooks.RankFinished(at.rank, res)
	}
	if res.Kind != kindExit || res.Status != 0 {
		if !(at.stopped.Load() && (res.Kind == kindStopped || res.Kind == kindSignal)) {
			in.out.say("rank %d on %s: %s", at.rank, at.node.Name, res.Reason)
		}
	}
	return m.ev
}

// stopAll ends every attempt and waits for the goroutines.
func (in *initiator) stopAll() {
	close(in.quit)
	for _, at := range in.attempts {
		at.cancel()
	}
	in.wg.Wait()
}

func (in *initiator) report(d sched.Done) JobReport {
	rep := JobReport{Job: in.jobID, Status: d.Status, Reason: d.Reason}
	for _, ri := range in.job.Ranks() {
		rr := in.reports[ri.Rank]
		rr.Rank, rr.Restarts, rr.Incarnation, rr.State = ri.Rank, ri.Restarts, ri.Incarnation, ri.State.String()
		if ri.State == sched.RankFailed || ri.State == sched.RankStopped {
			rr.Exit, rr.Reason = ri.Status, ri.Reason
		}
		rep.Ranks = append(rep.Ranks, rr)
	}
	return rep
}
