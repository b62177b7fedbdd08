package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/server"
)

// The ping-pong benchmark reproduces the π-Spaces paper's experiment: two
// processes exchange messages over pairs of channels (per round, one
// channel each way; each message sent msgs times), against raw TCP between
// the same two processes. This process is one side and hosts the comm
// server; the other side is this binary re-executed as a peer. The two
// coordinate over a control connection; payload travels on a separate data
// connection (TCP cases) or through π-channels.

const peerCommand = "__peer"

var pingpongSizes = []int{100, 1000, 5000, 10000, 50000, 100000, 1 << 20}

type pp struct {
	ctrl   *bufio.ReadWriter
	data   net.Conn // raw TCP, the baseline
	udata  net.Conn // raw Unix socket: what comm uses between processes of one host
	client *comm.Client
	space  *comm.Space // the space of the case being run
	buf    []byte
	seq    int
	// alive ends, with the reason as its cause, when the peer process
	// exits (on this side; never on the peer's): a channel whose writer
	// died waits for more bytes, as channels do, so this side's channel
	// reads watch it rather than hang.
	alive context.Context
}

// read fills b from r, or fails once the peer is gone.
func (p *pp) read(r *comm.Reader, b []byte) error {
	_, err := io.ReadFull(ctxReader{p.alive, r}, b)
	return p.peerGone(err)
}

// peerGone returns why the peer is gone, if it is, and err otherwise.
func (p *pp) peerGone(err error) error {
	if err != nil && context.Cause(p.alive) != nil {
		return context.Cause(p.alive)
	}
	return err
}

// ctxReader reads r bounded by ctx.
type ctxReader struct {
	ctx context.Context
	r   *comm.Reader
}

func (c ctxReader) Read(b []byte) (int, error) { return c.r.ReadContext(c.ctx, b) }

func runPingpong(ctx context.Context, quick bool) error {
	header("pingpong")
	srv, err := server.New(server.Config{MemoryBytes: 1 << 30})
	if err != nil {
		return err
	}
	defer srv.Close()
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(sl)
	p, cleanup, err := startPeer(ctx, sl.Addr().String())
	if err != nil {
		return err
	}
	defer cleanup()
	ctx = p.alive // no call waits for a peer that is gone

	runs, msgs, budget := 7, 100, int64(256<<20)
	if quick {
		runs, msgs, budget = 5, 10, 8<<20
	}
	for _, size := range pingpongSizes {
		rounds := int(max(1, min(10, budget/int64(2*size*msgs))))
		if err := p.throughput(ctx, size, msgs, rounds, runs); err != nil {
			return err
		}
	}
	iters := 2000
	if quick {
		iters = 200
	}
	if err := p.latency(ctx, iters, runs); err != nil {
		return err
	}
	setups := 200
	if quick {
		setups = 20
	}
	return p.setup(ctx, setups, runs)
}

// setup measures what a channel costs to set up and tear down: per round,
// a fresh pair of channels (create, attach, one 8-byte round trip,
// close), against a fresh TCP connection per round (dial, accept, one
// 8-byte round trip, close).
func (p *pp) setup(ctx context.Context, rounds, runs int) error {
	var tcp, chans samples
	for i := -1; i < runs; i++ {
		t1, err := p.tcpSetup(rounds)
		if err != nil {
			return err
		}
		t2, err := p.chanPingpong(ctx, 8, 1, rounds)
		if err != nil {
			return err
		}
		if i >= 0 {
			tcp = append(tcp, float64(t1.Microseconds())/float64(rounds))
			chans = append(chans, float64(t2.Microseconds())/float64(rounds))
		}
	}
	param := map[string]any{"size": 8, "count": rounds}
	emit(result{Bench: "pingpong", Case: "tcp-setup", Param: param, Metric: "us", Better: "lower"}, tcp, "", nil)
	emit(result{Bench: "pingpong", Case: "setup", Param: param, Metric: "us", Better: "lower"}, chans, "tcp-setup", tcp)
	return nil
}

// tcpSetup times n rounds of a fresh TCP connection from the peer: accept,
// an 8-byte round trip, close.
func (p *pp) tcpSetup(n int) (time.Duration, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	if err := p.command("setup %d %s", n, l.Addr()); err != nil {
		return 0, err
	}
	buf := p.buf[:8]
	start := time.Now()
	for range n {
		c, err := l.Accept()
		if err != nil {
			return 0, err
		}
		_, err = c.Write(buf)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		c.Close()
		if err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	return d, p.awaitOK()
}

// throughput measures one message size in the three cases, interleaved.
func (p *pp) throughput(ctx context.Context, size, msgs, rounds, runs int) error {
	var tcp, unix, direct, tcpOne, cached samples
	bytesPP := float64(2 * size * msgs * rounds)
	bytesOne := float64(size * msgs)
	for i := -1; i < runs; i++ { // run -1 is the warm-up
		t1, err := p.rawPingpong("tcp", size, msgs*rounds)
		if err != nil {
			return err
		}
		t5, err := p.rawPingpong("unix", size, msgs*rounds)
		if err != nil {
			return err
		}
		t2, err := p.chanPingpong(ctx, size, msgs, rounds)
		if err != nil {
			return err
		}
		t3, err := p.tcpOneway(size, msgs)
		if err != nil {
			return err
		}
		t4, err := p.cacheOneway(ctx, size, msgs)
		if err != nil {
			return err
		}
		if i >= 0 {
			tcp = append(tcp, bytesPP/t1.Seconds()/1e6)
			unix = append(unix, bytesPP/t5.Seconds()/1e6)
			direct = append(direct, bytesPP/t2.Seconds()/1e6)
			tcpOne = append(tcpOne, bytesOne/t3.Seconds()/1e6)
			cached = append(cached, bytesOne/t4.Seconds()/1e6)
		}
	}
	param := map[string]any{"size": size, "count": msgs}
	emit(result{Bench: "pingpong", Case: "tcp", Param: param, Metric: "MB/s", Better: "higher"}, tcp, "", nil)
	emit(result{Bench: "pingpong", Case: "unix", Param: param, Metric: "MB/s", Better: "higher"}, unix, "", nil)
	emit(result{Bench: "pingpong", Case: "direct", Param: param, Metric: "MB/s", Better: "higher"}, direct, "tcp", tcp)
	emit(result{Bench: "pingpong", Case: "direct-vs-unix", Param: param, Metric: "MB/s", Better: "higher"}, direct, "unix", unix)
	emit(result{Bench: "pingpong", Case: "cache", Param: param, Metric: "MB/s", Better: "higher"}, cached, "tcp-oneway", tcpOne)
	return nil
}

// latency measures the round trip of an 8-byte message.
func (p *pp) latency(ctx context.Context, iters, runs int) error {
	var tcp, unix, direct samples
	for i := -1; i < runs; i++ {
		t1, err := p.rawPingpong("tcp", 8, iters)
		if err != nil {
			return err
		}
		t3, err := p.rawPingpong("unix", 8, iters)
		if err != nil {
			return err
		}
		t2, err := p.chanPingpong(ctx, 8, iters, 1)
		if err != nil {
			return err
		}
		if i >= 0 {
			tcp = append(tcp, float64(t1.Microseconds())/float64(iters))
			unix = append(unix, float64(t3.Microseconds())/float64(iters))
			direct = append(direct, float64(t2.Microseconds())/float64(iters))
		}
	}
	param := map[string]any{"size": 8, "count": iters}
	emit(result{Bench: "pingpong", Case: "tcp-rtt", Param: param, Metric: "us", Better: "lower"}, tcp, "", nil)
	emit(result{Bench: "pingpong", Case: "unix-rtt", Param: param, Metric: "us", Better: "lower"}, unix, "", nil)
	emit(result{Bench: "pingpong", Case: "rtt", Param: param, Metric: "us", Better: "lower"}, direct, "tcp", tcp)
	emit(result{Bench: "pingpong", Case: "rtt-vs-unix", Param: param, Metric: "us", Better: "lower"}, direct, "unix", unix)
	return nil
}

// command asks the peer to run its side of a case and returns a function
// that waits for the peer's "ok".
func (p *pp) command(format string, args ...any) error {
	fmt.Fprintf(p.ctrl, format+"\n", args...)
	return p.ctrl.Flush()
}

func (p *pp) awaitOK() error {
	line, err := p.ctrl.ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	if line != "ok\n" {
		return fmt.Errorf("peer: %s", strings.TrimSpace(line))
	}
	return nil
}

// rawPingpong bounces n messages over the raw connection of the network
// ("tcp" or "unix").
func (p *pp) rawPingpong(network string, size, n int) (time.Duration, error) {
	if err := p.command("%s %d %d", network, size, n); err != nil {
		return 0, err
	}
	data := p.raw(network)
	buf := p.buf[:size]
	start := time.Now()
	for range n {
		if _, err := data.Write(buf); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(data, buf); err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	return d, p.awaitOK()
}

func (p *pp) raw(network string) net.Conn {
	if network == "unix" {
		return p.udata
	}
	return p.data
}

func (p *pp) chanPingpong(ctx context.Context, size, msgs, rounds int) (time.Duration, error) {
	p.seq++
	tag := fmt.Sprintf("pp%d", p.seq)
	if err := p.openSpaces(ctx, tag); err != nil {
		return 0, err
	}
	if err := p.command("chan %d %d %d %s", size, msgs, rounds, tag); err != nil {
		return 0, err
	}
	buf := p.buf[:size]
	readers := make([]*comm.Reader, 0, rounds)
	start := time.Now()
	for r := range rounds {
		w, err := p.space.Create(ctx, fmt.Sprintf("%s/%d/ab", tag, r))
		if err != nil {
			return 0, err
		}
		rd, err := p.space.Attach(ctx, fmt.Sprintf("%s/%d/ba", tag, r))
		if err != nil {
			return 0, err
		}
		readers = append(readers, rd)
		for range msgs {
			if _, err := w.Write(buf); err != nil {
				return 0, err
			}
			if err := p.read(rd, buf); err != nil {
				return 0, err
			}
		}
		if err := w.Close(ctx); err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	if err := p.awaitOK(); err != nil {
		return 0, err
	}
	return d, p.closeSpaces(ctx, readers)
}

// openSpaces opens a fresh space for one case on both sides, untimed. Each
// case gets its own space so that closing it afterwards (every channel
// sealed and read to its end) frees its bytes in the cache.
func (p *pp) openSpaces(ctx context.Context, name string) error {
	s, err := p.client.OpenSpace(ctx, name)
	if err != nil {
		return err
	}
	p.space = s
	if err := p.command("open %s", name); err != nil {
		return err
	}
	return p.awaitOK()
}

// closeSpaces reads the given readers to their end (so that their
// instances count as read), then closes the case's space on both sides.
// It is not timed.
func (p *pp) closeSpaces(ctx context.Context, readers []*comm.Reader) error {
	if err := p.peerGone(drain(p.alive, readers)); err != nil {
		return err
	}
	if err := p.space.Close(ctx); err != nil {
		return err
	}
	if err := p.command("close"); err != nil {
		return err
	}
	return p.awaitOK()
}

func drain(ctx context.Context, readers []*comm.Reader) error {
	for _, rd := range readers {
		if n, err := io.Copy(io.Discard, ctxReader{ctx, rd}); err != nil || n != 0 {
			return fmt.Errorf("draining a read channel: %d bytes past the messages, %v", n, err)
		}
		rd.Close()
	}
	return nil
}

func (p *pp) tcpOneway(size, msgs int) (time.Duration, error) {
	if err := p.command("oneway %d %d", size, msgs); err != nil {
		return 0, err
	}
	buf := p.buf[:size]
	start := time.Now()
	for range msgs {
		if _, err := p.data.Write(buf); err != nil {
			return 0, err
		}
	}
	if _, err := io.ReadFull(p.data, buf[:1]); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, p.awaitOK()
}

// cacheOneway writes msgs messages to a channel and closes it; only then
// does the peer attach and read it all from the cache. The time is the
// reader's: from the command to its last byte.
func (p *pp) cacheOneway(ctx context.Context, size, msgs int) (time.Duration, error) {
	p.seq++
	name := fmt.Sprintf("cache%d", p.seq)
	if err := p.openSpaces(ctx, name); err != nil {
		return 0, err
	}
	w, err := p.space.Create(ctx, name)
	if err != nil {
		return 0, err
	}
	for range msgs {
		if _, err := w.Write(p.buf[:size]); err != nil {
			return 0, err
		}
	}
	if err := w.Close(ctx); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := p.command("cacheread %s %d", name, size*msgs); err != nil {
		return 0, err
	}
	if err := p.awaitOK(); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, p.closeSpaces(ctx, nil)
}

func startPeer(ctx context.Context, serverAddr string) (*pp, func(), error) {
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	ul, err := net.Listen("unix", "@pispace-bench-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		return nil, nil, err
	}
	defer ul.Close()
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, exe, peerCommand, cl.Addr().String(), serverAddr, ul.Addr().String())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	alive, gone := context.WithCancelCause(ctx)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		gone(fmt.Errorf("peer exited: %v", cmp.Or(err, errors.New("exit status 0"))))
		close(exited)
	}()
	ctrl, err1 := cl.Accept()
	data, err2 := cl.Accept()
	udata, err3 := ul.Accept()
	if err1 != nil || err2 != nil || err3 != nil {
		cmd.Process.Kill()
		return nil, nil, fmt.Errorf("peer did not connect: %v %v %v", err1, err2, err3)
	}
	data.(*net.TCPConn).SetNoDelay(true)
	c, err := comm.New(comm.Config{Servers: []string{serverAddr}})
	if err != nil {
		cmd.Process.Kill()
		return nil, nil, err
	}
	p := &pp{ctrl: bufio.NewReadWriter(bufio.NewReader(ctrl), bufio.NewWriter(ctrl)), data: data, udata: udata, client: c,
		buf: make([]byte, 1<<20), alive: alive}
	cleanup := func() {
		p.command("quit")
		select {
		case <-exited:
		case <-time.After(5 * time.Second): // the peer is stuck in a failed case
			cmd.Process.Kill()
			<-exited
		}
		ctrl.Close()
		data.Close()
		udata.Close()
		c.Close()
	}
	return p, cleanup, nil
}

// peerMain is the other side: it connects back, then runs the commands it
// is sent.
func peerMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "peer: want CTRL-ADDR SERVER-ADDR UNIX-ADDR")
		return 2
	}
	ctx := context.Background()
	ctrl, err := net.Dial("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 1
	}
	data, err := net.Dial("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 1
	}
	udata, err := net.Dial("unix", args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 1
	}
	c, err := comm.New(comm.Config{Servers: []string{args[1]}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 1
	}
	defer c.Close()
	p := &pp{ctrl: bufio.NewReadWriter(bufio.NewReader(ctrl), bufio.NewWriter(ctrl)), data: data, udata: udata, client: c,
		buf: make([]byte, 1<<20), alive: ctx}
	for {
		line, err := p.ctrl.ReadString('\n')
		if err != nil {
			return 0
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "quit" {
			return 0
		}
		if err := p.peerCase(ctx, f); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err) // this side may be stuck waiting for a message
			p.command("error %v", err)
			return 1
		}
		p.command("ok")
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (p *pp) peerCase(ctx context.Context, f []string) error {
	switch f[0] {
	case "tcp", "unix":
		data := p.raw(f[0])
		buf := p.buf[:atoi(f[1])]
		for range atoi(f[2]) {
			if _, err := io.ReadFull(data, buf); err != nil {
				return err
			}
			if _, err := data.Write(buf); err != nil {
				return err
			}
		}
	case "setup":
		buf := p.buf[:8]
		for range atoi(f[1]) {
			c, err := net.Dial("tcp", f[2])
			if err != nil {
				return err
			}
			_, err = io.ReadFull(c, buf)
			if err == nil {
				_, err = c.Write(buf)
			}
			c.Close()
			if err != nil {
				return err
			}
		}
	case "oneway":
		buf := p.buf[:atoi(f[1])]
		for range atoi(f[2]) {
			if _, err := io.ReadFull(p.data, buf); err != nil {
				return err
			}
		}
		_, err := p.data.Write(buf[:1])
		return err
	case "open":
		s, err := p.client.OpenSpace(ctx, f[1])
		p.space = s
		return err
	case "close":
		return p.space.Close(ctx)
	case "chan":
		return p.peerChan(ctx, atoi(f[1]), atoi(f[2]), atoi(f[3]), f[4])
	case "cacheread":
		r, err := p.space.Attach(ctx, f[1])
		if err != nil {
			return err
		}
		defer r.Close()
		n, err := io.CopyBuffer(io.Discard, r, p.buf)
		if err == nil && n != int64(atoi(f[2])) {
			err = fmt.Errorf("cache read %d bytes, want %s", n, f[2])
		}
		return err
	default:
		return fmt.Errorf("unknown command %q", f[0])
	}
	return nil
}

func (p *pp) peerChan(ctx context.Context, size, msgs, rounds int, tag string) error {
	buf := p.buf[:size]
	readers := make([]*comm.Reader, 0, rounds)
	for r := range rounds {
		rd, err := p.space.Attach(ctx, fmt.Sprintf("%s/%d/ab", tag, r))
		if err != nil {
			return err
		}
		readers = append(readers, rd)
		w, err := p.space.Create(ctx, fmt.Sprintf("%s/%d/ba", tag, r))
		if err != nil {
			return err
		}
		for range msgs {
			if _, err := io.ReadFull(rd, buf); err != nil {
				return err
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		if err := w.Close(ctx); err != nil {
			return err
		}
	}
	// After the last round the other side has stopped its clock: reading
	// to the end (so the instances count as read) is not timed.
	return drain(ctx, readers)
}
