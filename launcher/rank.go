package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/pispace/pispace/sched"
)

// Result kinds reported by a servent.
const (
	kindExit    = "exit"    // exited with a status
	kindSignal  = "signal"  // killed by a signal nobody on our side sent
	kindTime    = "time"    // stopped for exceeding its time limit
	kindMemory  = "memory"  // killed for exceeding its memory limit
	kindStopped = "stopped" // ended after the initiator signalled it
	kindStart   = "start"   // could not be started
	kindLost    = "lost"    // the initiator's view: the node or connection was lost
)

// rankSpec is one process to run.
type rankSpec struct {
	Path      string
	Args      []string // argv, Args[0] is the program name
	Env       []string
	Dir       string
	Stdin     bool          // accept stdin frames
	TimeLimit time.Duration // 0: none
	MemLimit  int64         // bytes, 0: none
	Grace     time.Duration // between SIGTERM and SIGKILL at the time limit
	Poll      time.Duration // memory watch period
	Label     string        // cgroup name suffix
}

// rankProc is a started rank: its process group, output and limits.
type rankProc struct {
	spec    rankSpec
	cmd     *exec.Cmd
	pid     int
	start   time.Time
	stdin   io.WriteCloser
	outR    *os.File
	errR    *os.File
	cg      *cgroup
	mu      sync.Mutex
	why     string // set when we stopped it: kindTime, kindMemory, kindStopped
	reason  string
	peak    int64
	signals chan int
}

// startRank starts spec in its own process group (so signals reach its
// children too) with SIGKILL as its parent-death signal.
func startRank(spec rankSpec) (*rankProc, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir, Stdout: outW, Stderr: errW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &rankProc{spec: spec, cmd: cmd, outR: outR, errR: errR, signals: make(chan int, 8)}
	var inR *os.File
	if spec.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(outR, outW, errR, errW)
			return nil, err
		}
		inR, p.stdin, cmd.Stdin = r, w, r
	}
	if spec.MemLimit > 0 {
		p.cg = newCgroup(spec.Label, spec.MemLimit)
		p.cg.apply(cmd.SysProcAttr)
	}
	p.start = time.Now()
	err = startRetry(p)
	closeAll(outW, errW)
	if inR != nil {
		inR.Close()
	}
	if err != nil {
		closeAll(outR, errR)
		if p.stdin != nil {
			p.stdin.Close()
		}
		p.cg.remove()
		return nil, fmt.Errorf("launcher: start %s: %w", spec.Args[0], err)
	}
	p.pid = p.cmd.Process.Pid
	return p, nil
}

// startRetry starts cmd, retrying on ETXTBSY: a binary just written to the
// cache can still be open for writing in a child forked by another goroutine
// between its fork and exec (golang/go#22315); that window is short.
// All of the command's files are *os.File, so a failed Start closes none of
// them and a fresh exec.Cmd can reuse them.
func startRetry(p *rankProc) error {
	for i := 0; ; i++ {
		err := p.cmd.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || i == 50 {
			return err
		}
		time.Sleep(10 * time.Millisecond)
		c := p.cmd
		p.cmd = &exec.Cmd{Path: c.Path, Args: c.Args, Env: c.Env, Dir: c.Dir, Stdin: c.Stdin, Stdout: c.Stdout,
			Stderr: c.Stderr, SysProcAttr: c.SysProcAttr}
	}
}

func closeAll(cs ...io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// signal forwards the initiator's sig to the rank's process group.
func (p *rankProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	if p.why == "" {
		p.why = kindStopped
	}
	p.mu.Unlock()
	syscall.Kill(-p.pid, sig)
}

// stopWith records why the rank is being stopped and sends sig.
func (p *rankProc) stopWith(kind, reason string, sig syscall.Signal) {
	p.mu.Lock()
	if p.why == "" || p.why == kindStopped || p.why == kind {
		p.why, p.reason = kind, reason
	}
	p.mu.Unlock()
	syscall.Kill(-p.pid, sig)
}

// pumpLines sends every line of r (and a last partial line) to emit.
func pumpLines(r io.Reader, emit func([]byte) error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if emit(line) != nil {
				io.Copy(io.Discard, br) // keep draining so the rank never blocks
				return
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// wait runs the rank to its end: it enforces the time and memory limits,
// streams output through emit, applies signals from p.signals and kills the
// group when ctx ends. It returns the result with metrics.
func (p *rankProc) wait(ctx context.Context, stdout, stderr func([]byte) error) RankResult {
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); pumpLines(p.outR, stdout) }()
	go func() { defer pumps.Done(); pumpLines(p.errR, stderr) }()

	exited := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() { defer watch.Done(); p.supervise(ctx, exited) }()

	err := p.cmd.Wait()
	wall := time.Since(p.start)
	close(exited)
	watch.Wait()
	syscall.Kill(-p.pid, syscall.SIGKILL) // whatever the rank left behind in its group
	if !waitTimeout(&pumps, 2*time.Second) {
		closeAll(p.outR, p.errR) // a process left the group holding our pipes
		pumps.Wait()
	}
	closeAll(p.outR, p.errR)
	if p.stdin != nil {
		p.stdin.Close()
	}
	res := p.result(err, wall)
	p.cg.remove()
	return res
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// supervise owns the limit timers and the memory watch until exited closes.
func (p *rankProc) supervise(ctx context.Context, exited <-chan struct{}) {
	var timeC, killC <-chan time.Time
	if p.spec.TimeLimit > 0 {
		t := time.NewTimer(p.spec.TimeLimit)
		defer t.Stop()
		timeC = t.C
	}
	// Memory samples start 1 ms after the start and back off to spec.Poll,
	// so short ranks get a peak too.
	every := time.Millisecond
	sample := time.NewTimer(every)
	defer sample.Stop()
	for {
		select {
		case <-exited:
			return
		case <-ctx.Done():
			p.stopWith(kindStopped, "connection to the initiator closed", syscall.SIGKILL)
			ctx = context.Background()
		case sig := <-p.signals:
			p.signal(syscall.Signal(sig))
		case <-timeC:
			p.stopWith(kindTime, fmt.Sprintf("time limit %s exceeded: terminated", p.spec.TimeLimit), syscall.SIGTERM)
			kt := time.NewTimer(p.spec.Grace)
			defer kt.Stop()
			killC = kt.C
		case <-killC:
			p.stopWith(kindTime, fmt.Sprintf("time limit %s exceeded: killed %s after SIGTERM", p.spec.TimeLimit, p.spec.Grace), syscall.SIGKILL)
		case <-sample.C:
			p.checkMemory()
			every = min(2*every, p.spec.Poll)
			sample.Reset(every)
		}
	}
}

// checkMemory samples the rank's peak (VmHWM of the main process, plus the
// whole group's resident memory when a limit is watched) and enforces the
// limit when no cgroup does.
func (p *rankProc) checkMemory() {
	hwm := vmField(p.pid, "VmHWM:")
	var rss int64
	watch := p.spec.MemLimit > 0 && !p.cg.active()
	if watch {
		rss = groupRSS(p.pid)
	}
	p.mu.Lock()
	p.peak = max(p.peak, hwm, rss)
	p.mu.Unlock()
	if watch && rss > p.spec.MemLimit {
		p.stopWith(kindMemory, fmt.Sprintf("memory limit %s exceeded (resident %s): killed",
			sched.FormatBytes(p.spec.MemLimit), sched.FormatBytes(rss)), syscall.SIGKILL)
	}
}

// result turns the wait outcome into a RankResult.
func (p *rankProc) result(err error, wall time.Duration) RankResult {
	res := RankResult{Wall: wall}
	st := p.cmd.ProcessState
	if st == nil {
		return RankResult{Kind: kindStart, Status: 127, Reason: err.Error(), Wall: wall}
	}
	// rusage's Maxrss is not used: Linux carries the parent's peak across
	// exec, so it reports the servent's size for small ranks.
	res.CPU = st.UserTime() + st.SystemTime()
	p.mu.Lock()
	res.PeakMem = max(p.peak, p.cg.peak())
	why, reason := p.why, p.reason
	p.mu.Unlock()
	ws, _ := st.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		res.Status = 128 + int(ws.Signal())
		res.Kind, res.Reason = kindSignal, fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	default:
		res.Status = ws.ExitStatus()
		res.Kind, res.Reason = kindExit, fmt.Sprintf("exit status %d", res.Status)
	}
	if p.cg.oomKilled() && why == "" {
		why, reason = kindMemory, fmt.Sprintf("memory limit %s exceeded: killed by the kernel", sched.FormatBytes(p.spec.MemLimit))
	}
	if why != "" && (res.Kind == kindSignal || why != kindStopped) {
		res.Kind = why
		if reason != "" {
			res.Reason = reason
		}
	}
	return res
}
