package launcher

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pispace/pispace/sched"
)

// ServentConfig configures a Servent. Zero values are documented per field.
type ServentConfig struct {
	Name    string        // node name, reported in resource reports
	Slots   int           // rank slots; must be >= 1
	Mem     int64         // memory for ranks in bytes; 0 means not checked
	MaxTime time.Duration // longest time limit granted; 0 means none
	DataDir string        // binary cache and rank working dirs; required
	Key     []byte        // cluster key; nil means clients need not authenticate
	Grace   time.Duration // SIGTERM to SIGKILL at the time limit; 0 means 2 s
	Poll    time.Duration // memory watch period; 0 means 100 ms
	Env     []string      // base environment of ranks; nil means os.Environ()
	Procs   int           // GOMAXPROCS of each rank (unless Env sets one); 0 leaves Go's default
	Logger  *slog.Logger  // nil means discard
	// OnChange, if set, is called with the new resource state after every
	// reservation or release (the node republishes its metadata). It must not block.
	OnChange func(sched.Node)
	// Locate, if set, answers locator queries from the membership view.
	Locate func(sched.Need) []NodeInfo
}

// Servent accepts or declines rank offers, runs accepted ranks with their
// limits and reports their metrics. Its methods are safe for concurrent use.
type Servent struct {
	cfg    ServentConfig
	binDir string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	state   sched.Node
	running map[*session]RunningRank
	binLock map[string]*sync.Mutex // per program hash: one transfer at a time
	lis     []net.Listener
	closed  bool
	wg      sync.WaitGroup
}

// NewServent validates cfg (ErrUsage) and prepares the data directory.
func NewServent(cfg ServentConfig) (*Servent, error) {
	if cfg.Slots < 1 {
		return nil, fmt.Errorf("%w: servent needs at least 1 slot", ErrUsage)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: servent needs a data directory", ErrUsage)
	}
	cfg.Grace = cmpOr(cfg.Grace, 2*time.Second)
	cfg.Poll = cmpOr(cfg.Poll, 100*time.Millisecond)
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Servent{cfg: cfg, binDir: filepath.Join(cfg.DataDir, "bin"), running: map[*session]RunningRank{},
		binLock: map[string]*sync.Mutex{}}
	for _, d := range []string{s.binDir, filepath.Join(cfg.DataDir, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("launcher: servent data dir: %w", err)
		}
	}
	s.state = sched.Node{Name: cfg.Name, Slots: cfg.Slots, FreeSlots: cfg.Slots, Mem: cfg.Mem, FreeMem: cfg.Mem, MaxTime: cfg.MaxTime}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// State returns the node's resources with current reservations subtracted.
func (s *Servent) State() sched.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Serve accepts connections on l until Close or Shutdown, then returns
// ErrClosed; any other accept failure is returned wrapped. Each connection
// gets its own goroutine.
func (s *Servent) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.lis = append(s.lis, l)
	s.mu.Unlock()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("launcher: servent accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		if !s.goFunc(func() { s.handle(c) }) {
			c.Close()
			return ErrClosed
		}
	}
}

func (s *Servent) goFunc(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
	return true
}

// Close stops accepting, kills every running rank and waits for them. It is
// idempotent.
func (s *Servent) Close() error {
	s.stopAccepting()
	s.cancel()
	s.wg.Wait()
	return nil
}

// stopAccepting marks the servent closed and closes its listeners.
func (s *Servent) stopAccepting() {
	s.mu.Lock()
	s.closed = true
	lis := s.lis
	s.lis = nil
	s.mu.Unlock()
	for _, l := range lis {
		l.Close()
	}
}

func (s *Servent) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops accepting offers and waits for the running ranks to end on
// their own; when ctx ends first it kills them (Close) and returns ctx.Err().
func (s *Servent) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return ctx.Err()
	}
}

// Running lists the ranks running now.
func (s *Servent) Running() []RunningRank {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RunningRank, 0, len(s.running))
	for sess, r := range s.running {
		r.Running = time.Since(sess.started).Round(time.Millisecond)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b RunningRank) int {
		return cmp.Or(strings.Compare(a.Job, b.Job), cmp.Compare(a.Rank, b.Rank))
	})
	return out
}

// session is one client connection.
type session struct {
	s       *Servent
	conn    net.Conn
	fr      *frameReader
	fw      *frameWriter
	log     *slog.Logger
	started time.Time
}

func (s *Servent) handle(c net.Conn) {
	defer c.Close()
	ss := &session{s: s, conn: c, fr: newFrameReader(c), fw: newFrameWriter(c, 10*time.Second),
		log: s.cfg.Logger.With("peer", c.RemoteAddr().String())}
	first, err := ss.greet()
	if err != nil {
		ss.fail(err)
		return
	}
	switch first.Op {
	case opOffer:
		err = ss.offer(first)
	case opLocate:
		err = ss.locate(first)
	case opStatus:
		err = ss.fw.ctl(ctl{Op: opRanks, Ranks: s.Running(), Report: ptr(s.State())})
	default:
		err = fmt.Errorf("%w: unknown op %q", ErrProtocol, first.Op)
	}
	if err != nil {
		ss.fail(err)
	}
}

func ptr[T any](v T) *T { return &v }

// fail reports err to the client (best effort) and logs it.
func (ss *session) fail(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	ss.log.Warn("servent: closing connection", "err", err)
	ss.fw.ctl(ctl{Op: opError, Error: err.Error()})
}

// greet sends the hello (with a nonce when a key is set) and reads the
// client's first message, checking its version and key proof.
func (ss *session) greet() (ctl, error) {
	var nonce string
	if ss.s.cfg.Key != nil {
		b := make([]byte, 16)
		rand.Read(b)
		nonce = hex.EncodeToString(b)
	}
	if err := ss.fw.ctl(ctl{Op: opHello, Version: ProtocolVersion, Nonce: nonce}); err != nil {
		return ctl{}, err
	}
	ss.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, err := ss.fr.nextCtl()
	ss.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return ctl{}, err
	}
	if first.Version != ProtocolVersion {
		return ctl{}, fmt.Errorf("%w: protocol version %d, this node speaks %d", ErrProtocol, first.Version, ProtocolVersion)
	}
	if ss.s.cfg.Key != nil && !hmac.Equal([]byte(first.Auth), []byte(authProof(ss.s.cfg.Key, nonce))) {
		return ctl{}, fmt.Errorf("%w: the client does not hold this cluster's key", ErrAuth)
	}
	return first, nil
}

// authProof is HMAC-SHA256(key, "pirun-servent|"+nonce) in hex.
func authProof(key []byte, nonce string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pirun-servent|" + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

func (ss *session) locate(c ctl) error {
	var nodes []NodeInfo
	if ss.s.cfg.Locate != nil {
		nodes = ss.s.cfg.Locate(sched.Need{Mem: c.Mem, Time: c.Time, Oversubscribe: c.Oversubscribe})
	}
	return ss.fw.ctl(ctl{Op: opNodes, Nodes: nodes})
}

// validateOffer rejects malformed offers with a clear error.
func validateOffer(c ctl) error {
	switch {
	case c.Job == "" || c.Name == "":
		return fmt.Errorf("%w: offer without job or program name", ErrProtocol)
	case c.Size < 1 || c.Rank < 0 || c.Rank >= c.Size:
		return fmt.Errorf("%w: offer for rank %d of %d", ErrProtocol, c.Rank, c.Size)
	case c.Incarnation < 0 || c.Mem < 0 || c.Time < 0:
		return fmt.Errorf("%w: negative incarnation, memory or time", ErrProtocol)
	case len(c.Hash) != 64 || !isHex(c.Hash):
		return fmt.Errorf("%w: program hash %q is not a sha256", ErrProtocol, c.Hash)
	case c.BinSize <= 0 || c.BinSize > 4<<30:
		return fmt.Errorf("%w: program size %d", ErrProtocol, c.BinSize)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// reserve takes resources for need or says why not.
func (s *Servent) reserve(need sched.Need) (report sched.Node, reason string, permanent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.state, "node is shutting down", false
	}
	if reason, permanent = sched.Admit(s.state, need); reason != "" {
		return s.state, reason, permanent
	}
	s.state = s.state.Reserve(need)
	s.changed()
	return s.state, "", false
}

func (s *Servent) release(need sched.Need) sched.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = s.state.Release(need)
	s.changed()
	return s.state
}

// changed publishes the state; s.mu is held.
func (s *Servent) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(s.state)
	}
}

func (ss *session) offer(c ctl) error {
	if err := validateOffer(c); err != nil {
		return err
	}
	need := sched.Need{Mem: c.Mem, Time: c.Time, Oversubscribe: c.Oversubscribe}
	report, reason, permanent := ss.s.reserve(need)
	if reason != "" {
		return ss.fw.ctl(ctl{Op: opDecline, Reason: reason, Permanent: permanent, Report: &report})
	}
	var once sync.Once
	release := func() (rep sched.Node) {
		once.Do(func() { rep = ss.s.release(need) })
		return rep
	}
	defer release()
	bin := filepath.Join(ss.s.binDir, c.Hash)
	if err := ss.obtainBinary(c, bin, report); err != nil {
		return err
	}
	return ss.run(c, bin, report, release)
}

// obtainBinary accepts the offer, asking for the binary unless it is cached.
// One transfer per hash runs at a time; concurrent offers for the same
// program wait for it rather than ship it again.
func (ss *session) obtainBinary(c ctl, bin string, report sched.Node) error {
	mu := ss.s.hashLock(c.Hash)
	mu.Lock()
	defer mu.Unlock()
	_, statErr := os.Stat(bin)
	needBin := statErr != nil
	if err := ss.fw.ctl(ctl{Op: opAccept, NeedBinary: needBin, Report: &report}); err != nil {
		return err
	}
	if !needBin {
		return nil
	}
	ss.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	defer ss.conn.SetReadDeadline(time.Time{})
	return ss.receiveBinary(c, bin)
}

func (s *Servent) hashLock(hash string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	mu, ok := s.binLock[hash]
	if !ok {
		mu = &sync.Mutex{}
		s.binLock[hash] = mu
	}
	return mu
}

// receiveBinary stores the shipped program under its sha256, verified.
func (ss *session) receiveBinary(c ctl, dst string) error {
	tmp, err := os.CreateTemp(ss.s.binDir, "recv-*")
	if err != nil {
		return fmt.Errorf("launcher: binary cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	var n int64
	for {
		t, p, err := ss.fr.next()
		if err != nil {
			return fmt.Errorf("launcher: receive binary: %w", err)
		}
		if t == frameCtl {
			m, err := decodeCtl(p)
			if err != nil {
				return err
			}
			if m.Op != opBinaryEnd {
				return fmt.Errorf("%w: %q while receiving the binary", ErrProtocol, m.Op)
			}
			break
		}
		if t != frameBinary {
			return fmt.Errorf("%w: frame type %q while receiving the binary", ErrProtocol, t)
		}
		if n += int64(len(p)); n > c.BinSize {
			return fmt.Errorf("%w: binary larger than announced %d bytes", ErrProtocol, c.BinSize)
		}
		h.Write(p)
		if _, err := tmp.Write(p); err != nil {
			return fmt.Errorf("launcher: binary cache: %w", err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != c.Hash || n != c.BinSize {
		return fmt.Errorf("%w: binary hash %s (%d bytes), offer said %s (%d bytes)", ErrProtocol, got, n, c.Hash, c.BinSize)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// rankEnv is the environment contract between pirun and a rank. procs,
// when positive, is the rank's GOMAXPROCS (see rankProcs), unless the
// base environment sets one.
func rankEnv(base []string, c ctl, procs int) []string {
	env := slices.Clone(base)
	if procs > 0 && !slices.ContainsFunc(base, func(e string) bool { return strings.HasPrefix(e, "GOMAXPROCS=") }) {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	env = append(env,
		"PIRUN_JOB="+c.Job,
		"PIRUN_RANK="+strconv.Itoa(c.Rank),
		"PIRUN_SIZE="+strconv.Itoa(c.Size),
		"PIRUN_INCARNATION="+strconv.Itoa(c.Incarnation),
		"PIRUN_MIN="+strconv.Itoa(cmpOr(c.Min, c.Size)),
		"PIRUN_MAX_RESTARTS="+strconv.Itoa(c.MaxRestarts),
		"PIRUN_COMM="+c.Comm,
		"PIRUN_SPACE="+c.Space,
	)
	return append(env, c.Env...)
}

// rankProcs is the GOMAXPROCS of a rank where slots rank slots share cpus
// processors (a node's, or the embedded cluster's, whose nodes share the
// machine): 1 when there are more slots than processors (the embedded
// cluster runs -n 4 on two cores so), where every rank runtime
// would otherwise keep as many Ps as the machine has cores, spinning and
// waking one another's threads on cores the other ranks need (and comm's
// reads do not busy-poll with one P). OSU with 4 ranks on 2 cores, two
// interleaved rounds: Allreduce of 1 float64 230-272 -> 202-217 us, of
// 1 Ki 814-832 -> 630-643 us, Barrier 223-267 -> 198-207 us. 0 (the Go
// default) otherwise: with a core per rank, a second P lets a read spin
// while the rank's other goroutines run (2 ranks on 2 cores with one P
// each: 8-byte latency 18-24 -> 28-29 us).
func rankProcs(slots, cpus int) int {
	if slots > cpus {
		return 1
	}
	return 0
}

func (ss *session) spec(c ctl, bin string) rankSpec {
	dir := filepath.Join(ss.s.cfg.DataDir, "work")
	if fi, err := os.Stat(c.Dir); c.Dir != "" && err == nil && fi.IsDir() {
		dir = c.Dir
	}
	limit := c.Time
	if limit == 0 {
		limit = ss.s.cfg.MaxTime
	}
	return rankSpec{Path: bin, Args: append([]string{c.Name}, c.Args...), Env: rankEnv(ss.s.cfg.Env, c, ss.s.cfg.Procs),
		Dir: dir, Stdin: c.Stdin, TimeLimit: limit, MemLimit: c.Mem, Grace: ss.s.cfg.Grace,
		Poll: ss.s.cfg.Poll, Label: fmt.Sprintf("%s-%d-%d", shortID(c.Job), c.Rank, c.Incarnation)}
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[len(s)-12:]
	}
	return s
}

// run starts the rank, serves its connection until it ends and reports.
func (ss *session) run(c ctl, bin string, report sched.Node, release func() sched.Node) error {
	p, err := startRank(ss.spec(c, bin))
	if err != nil {
		after := release()
		return ss.fw.ctl(ctl{Op: opExit, Result: &RankResult{Kind: kindStart, Status: 127, Reason: err.Error()}, Report: &after})
	}
	ss.started = time.Now()
	ss.s.mu.Lock()
	ss.s.running[ss] = RunningRank{Job: c.Job, Rank: c.Rank, Incarnation: c.Incarnation, PID: p.pid, Program: c.Name}
	ss.s.mu.Unlock()
	defer func() {
		ss.s.mu.Lock()
		delete(ss.s.running, ss)
		ss.s.mu.Unlock()
	}()
	ss.log.Info("servent: rank started", "job", c.Job, "rank", c.Rank, "inc", c.Incarnation, "pid", p.pid)
	ctx, cancel := context.WithCancel(ss.s.ctx)
	defer cancel()
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { defer readers.Done(); defer cancel(); ss.readClient(ctx, p) }()

	ss.fw.ctl(ctl{Op: opStarted, PID: p.pid, Report: &report})
	res := p.wait(ctx, func(b []byte) error { return ss.fw.write(frameStdout, b) },
		func(b []byte) error { return ss.fw.write(frameStderr, b) })
	ss.log.Info("servent: rank ended", "job", c.Job, "rank", c.Rank, "kind", res.Kind, "status", res.Status)
	after := release()
	err = ss.fw.ctl(ctl{Op: opExit, Result: &res, Report: &after})
	ss.conn.Close()
	readers.Wait()
	return err
}

// readClient applies stdin and signal frames from the client; when the
// connection ends it returns, and run's deferred cancel kills the rank.
func (ss *session) readClient(ctx context.Context, p *rankProc) {
	stdin := make(chan []byte, 64)
	var w sync.WaitGroup
	w.Add(1)
	go func() {
		defer w.Done()
		for b := range stdin {
			if b == nil {
				p.stdin.Close()
				continue
			}
			p.stdin.Write(b)
		}
	}()
	defer w.Wait()
	defer close(stdin)
	for {
		t, b, err := ss.fr.next()
		if err != nil {
			return
		}
		switch {
		case (t == frameStdin || t == frameStdinEOF) && p.stdin != nil:
			if t == frameStdinEOF {
				b = nil
			}
			select {
			case stdin <- b:
			case <-ctx.Done():
				return
			}
		case t == frameCtl:
			m, err := decodeCtl(b)
			if err != nil || m.Op != opSignal || m.Signal <= 0 || m.Signal > 64 {
				ss.fail(fmt.Errorf("%w: unexpected message while the rank runs", ErrProtocol))
				return
			}
			select {
			case p.signals <- m.Signal:
			case <-ctx.Done():
				return
			}
		}
	}
}
