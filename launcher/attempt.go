package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pispace/pispace/sched"
)

// attempt is one offer of one incarnation of a rank to one node, and, once
// accepted, the connection that carries the rank's output and its end.
type attempt struct {
	in      *initiator
	rank    int
	inc     int
	node    NodeInfo
	ctx     context.Context
	cancel  context.CancelFunc
	started atomic.Bool // the servent reported the rank started
	stopped atomic.Bool // the job signalled or withdrew it

	mu sync.Mutex
	fw *frameWriter
}

// send writes a control message once the connection exists.
func (at *attempt) send(c ctl) error {
	at.mu.Lock()
	fw := at.fw
	at.mu.Unlock()
	if fw == nil {
		return ErrClosed
	}
	return fw.ctl(c)
}

func (at *attempt) post(ev sched.Event, res *RankResult) {
	at.in.post(attemptMsg{at: at, ev: ev, res: res})
}

func (at *attempt) declined(reason string, permanent bool, report *sched.Node) {
	at.post(sched.Declined{Rank: at.rank, Incarnation: at.inc, Node: at.node.Name, Reason: reason,
		Permanent: permanent, Report: reportOf(report)}, nil)
}

// reportOf returns a servent's resource report, or the zero Node (no report)
// when it sent none.
func reportOf(report *sched.Node) sched.Node {
	if report == nil {
		return sched.Node{}
	}
	return *report
}

// run performs the attempt from dial to the rank's end.
func (at *attempt) run() {
	defer at.cancel()
	conn, err := dialServent(at.ctx, at.node.Servent)
	if err != nil {
		at.declined(fmt.Sprintf("servent unreachable: %v", err), true, nil)
		return
	}
	stop := context.AfterFunc(at.ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	fr := newFrameReader(conn)
	fw := newFrameWriter(conn, 10*time.Second)
	at.mu.Lock()
	at.fw = fw
	at.mu.Unlock()
	if err := at.negotiate(fr, fw); err != nil {
		at.lost(err)
	}
}

func dialServent(ctx context.Context, addr string) (net.Conn, error) {
	if addr == "" {
		return nil, errors.New("node advertises no servent address")
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// lost reports an attempt that ended without a result from the servent.
func (at *attempt) lost(err error) {
	switch {
	case errors.Is(err, errDeclined):
		// already reported
	case at.stopped.Load():
		at.post(sched.Exited{Rank: at.rank, Incarnation: at.inc, Kind: sched.ExitStopped, Status: 128 + sched.SignalKill,
			Reason: "stopped"}, &RankResult{Kind: kindStopped, Status: 128 + sched.SignalKill, Reason: "stopped"})
	default:
		reason := fmt.Sprintf("lost connection to node %s: %v", at.node.Name, err)
		at.post(sched.Exited{Rank: at.rank, Incarnation: at.inc, Kind: sched.ExitLost, Status: sched.StatusFailed, Reason: reason},
			&RankResult{Kind: kindLost, Status: sched.StatusFailed, Reason: reason})
	}
}

var errDeclined = errors.New("declined")

// negotiate runs the protocol: hello, offer, answer, binary, then the rank.
func (at *attempt) negotiate(fr *frameReader, fw *frameWriter) error {
	hello, err := fr.nextCtl()
	if err != nil {
		return err
	}
	if hello.Op != opHello {
		return fmt.Errorf("%w: servent said %q before hello", ErrProtocol, hello.Op)
	}
	if err := fw.ctl(at.offerMsg(hello.Nonce)); err != nil {
		return err
	}
	ans, err := fr.nextCtl()
	if err != nil {
		return err
	}
	switch ans.Op {
	case opDecline:
		at.declined(ans.Reason, ans.Permanent, ans.Report)
		return errDeclined
	case opError:
		at.declined("servent refused the offer: "+ans.Error, true, nil)
		return errDeclined
	case opAccept:
	default:
		return fmt.Errorf("%w: servent answered %q to an offer", ErrProtocol, ans.Op)
	}
	if ans.NeedBinary {
		if err := at.ship(fw); err != nil {
			return err
		}
	}
	return at.follow(fr, fw)
}

func (at *attempt) offerMsg(nonce string) ctl {
	in := at.in
	c := ctl{Op: opOffer, Version: ProtocolVersion, Job: in.jobID, Rank: at.rank, Size: in.cfg.Size,
		Incarnation: at.inc, Min: in.job.Config().Min, MaxRestarts: in.job.Config().MaxRestarts, Mem: in.cfg.Mem, Time: in.cfg.Time,
		Oversubscribe: in.cfg.Oversubscribe, Hash: in.prog.Hash, BinSize: in.prog.Size, Name: in.prog.Name,
		Args: in.cfg.Args, Env: in.cfg.Env, Dir: in.cfg.Dir, Comm: in.comm, Space: "job/" + in.jobID,
		Stdin: at.rank == 0 && in.cfg.Stdin != nil}
	if in.cfg.Key != nil {
		c.Auth = authProof(in.cfg.Key, nonce)
	}
	return c
}

// ship streams the program binary in chunks.
func (at *attempt) ship(fw *frameWriter) error {
	f, err := os.Open(at.in.prog.Path)
	if err != nil {
		return fmt.Errorf("launcher: ship binary: %w", err)
	}
	defer f.Close()
	buf := make([]byte, chunkSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if werr := fw.write(frameBinary, buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("launcher: ship binary: %w", err)
		}
	}
	return fw.ctl(ctl{Op: opBinaryEnd})
}

// follow relays the rank's output until its exit report.
func (at *attempt) follow(fr *frameReader, fw *frameWriter) error {
	for {
		t, p, err := fr.next()
		if err != nil {
			return err
		}
		switch t {
		case frameStdout, frameStderr:
			at.in.out.line(at.rank, t == frameStderr, p)
			continue
		case frameCtl:
		default:
			return fmt.Errorf("%w: frame type %q from servent", ErrProtocol, t)
		}
		m, err := decodeCtl(p)
		if err != nil {
			return err
		}
		switch m.Op {
		case opStarted:
			at.started.Store(true)
			at.post(sched.Accepted{Rank: at.rank, Incarnation: at.inc, Node: at.node.Name, Report: reportOf(m.Report)}, nil)
			at.startStdin(fw)
		case opExit:
			at.exited(m)
			return nil
		case opError:
			return fmt.Errorf("servent: %s", m.Error)
		default:
			return fmt.Errorf("%w: unexpected %q from servent", ErrProtocol, m.Op)
		}
	}
}

func (at *attempt) exited(m ctl) {
	res := RankResult{Kind: kindStart, Status: 127, Reason: "servent sent no result"}
	if m.Result != nil {
		res = *m.Result
	}
	at.post(sched.Exited{Rank: at.rank, Incarnation: at.inc, Status: res.Status, Reason: res.Reason,
		Kind: exitKind(res.Kind), Report: reportOf(m.Report)}, &res)
}

func exitKind(kind string) sched.ExitKind {
	switch kind {
	case kindTime, kindMemory:
		return sched.ExitLimit
	case kindSignal:
		return sched.ExitSignaled
	case kindStopped:
		return sched.ExitStopped
	case kindLost:
		return sched.ExitLost
	}
	return sched.ExitStatus
}

// startStdin forwards the initiator's stdin to the first incarnation of rank
// 0. The pump reads the initiator's stdin and cannot be interrupted while a
// Read blocks (a terminal, say): it is the one goroutine pirun abandons at
// exit. It stops at EOF or when the connection fails.
func (at *attempt) startStdin(fw *frameWriter) {
	in := at.in
	if at.rank != 0 || in.cfg.Stdin == nil || !in.stdinOn.CompareAndSwap(false, true) {
		return
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.cfg.Stdin.Read(buf)
			if n > 0 && fw.write(frameStdin, buf[:n]) != nil {
				return
			}
			if err != nil {
				fw.write(frameStdinEOF, nil)
				return
			}
		}
	}()
}
