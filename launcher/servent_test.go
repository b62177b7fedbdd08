package launcher

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pispace/pispace/sched"
)

func startServent(t *testing.T, cfg ServentConfig) (*Servent, string) {
	t.Helper()
	cfg.DataDir = cmpOr(cfg.DataDir, t.TempDir())
	cfg.Slots = cmpOr(cfg.Slots, 1)
	cfg.Name = "test-node"
	s, err := NewServent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
		s.Close() // idempotent
	})
	return s, l.Addr().String()
}

type client struct {
	t     *testing.T
	conn  net.Conn
	fr    *frameReader
	fw    *frameWriter
	nonce string
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, fr: newFrameReader(conn), fw: newFrameWriter(conn, time.Second)}
	hello := c.recv()
	if hello.Op != opHello || hello.Version != ProtocolVersion {
		t.Fatalf("hello = %+v", hello)
	}
	c.nonce = hello.Nonce
	return c
}

func (c *client) send(m ctl) {
	c.t.Helper()
	if err := c.fw.ctl(m); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next control message, collecting output frames on the way.
func (c *client) recv() ctl {
	c.t.Helper()
	for {
		typ, p, err := c.fr.next()
		if err != nil {
			c.t.Fatalf("recv: %v", err)
		}
		if typ == frameCtl {
			m, err := decodeCtl(p)
			if err != nil {
				c.t.Fatal(err)
			}
			return m
		}
	}
}

func offerFor(t *testing.T, bin string) (ctl, program) {
	t.Helper()
	prog, err := hashProgram(bin)
	if err != nil {
		t.Fatal(err)
	}
	return ctl{Op: opOffer, Version: ProtocolVersion, Job: "job-1", Size: 1, Hash: prog.Hash, BinSize: prog.Size,
		Name: prog.Name}, prog
}

func (c *client) ship(path string) {
	c.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	for len(b) > 0 {
		n := min(len(b), chunkSize)
		if err := c.fw.write(frameBinary, b[:n]); err != nil {
			c.t.Fatal(err)
		}
		b = b[n:]
	}
	c.send(ctl{Op: opBinaryEnd})
}

func TestServentRunsAndCachesBinary(t *testing.T) {
	s, addr := startServent(t, ServentConfig{})
	offer, _ := offerFor(t, bins["hello"])
	for i, wantShip := range []bool{true, false} {
		c := dial(t, addr)
		c.send(offer)
		acc := c.recv()
		if acc.Op != opAccept || acc.NeedBinary != wantShip {
			t.Fatalf("run %d: answer %+v, want accept with need_binary=%v", i, acc, wantShip)
		}
		if acc.Report.FreeSlots != 0 {
			t.Fatalf("reservation not reported: %+v", acc.Report)
		}
		if wantShip {
			c.ship(bins["hello"])
		}
		if m := c.recv(); m.Op != opStarted || m.PID == 0 {
			t.Fatalf("run %d: %+v, want started", i, m)
		}
		m := c.recv()
		if m.Op != opExit || m.Result.Kind != kindExit || m.Result.Status != 0 || m.Report.FreeSlots != 1 {
			t.Fatalf("run %d: exit %+v result %+v report %+v", i, m, m.Result, m.Report)
		}
	}
	if st := s.State(); st.FreeSlots != 1 || st.Seq != 4 {
		t.Fatalf("state after two runs: %+v", st)
	}
}

func TestServentDeclines(t *testing.T) {
	s, addr := startServent(t, ServentConfig{Mem: 64 << 20, MaxTime: time.Minute})
	offer, _ := offerFor(t, bins["sleeper"])
	for _, tc := range []struct {
		mem       int64
		time      time.Duration
		reason    string
		permanent bool
	}{
		{mem: 1 << 30, reason: "rank needs 1 GiB of memory, node has 64 MiB in total", permanent: true},
		{time: time.Hour, reason: "rank needs 1h0m0s, node allows at most 1m0s", permanent: true},
	} {
		c := dial(t, addr)
		o := offer
		o.Mem, o.Time = tc.mem, tc.time
		c.send(o)
		m := c.recv()
		if m.Op != opDecline || m.Reason != tc.reason || m.Permanent != tc.permanent {
			t.Errorf("offer mem=%d time=%s: %+v", tc.mem, tc.time, m)
		}
	}
	// fill the one slot, then a second offer finds none
	busy := dial(t, addr)
	o := offer
	o.Args = []string{"1h"}
	busy.send(o)
	if acc := busy.recv(); acc.Op == opAccept && acc.NeedBinary {
		busy.ship(bins["sleeper"])
	}
	if m := busy.recv(); m.Op != opStarted {
		t.Fatalf("busy rank: %+v", m)
	}
	c := dial(t, addr)
	c.send(offer)
	if m := c.recv(); m.Op != opDecline || m.Permanent || !strings.Contains(m.Reason, "no free slot (1 of 1 in use)") {
		t.Fatalf("second offer: %+v", m)
	}
	if got := s.Running(); len(got) != 1 || got[0].Job != "job-1" {
		t.Fatalf("Running = %+v", got)
	}
	busy.send(ctl{Op: opSignal, Signal: 15})
	m := busy.recv()
	if m.Op != opExit || m.Result.Kind != kindStopped || m.Result.Status != 143 {
		t.Fatalf("after SIGTERM: %+v %+v", m, m.Result)
	}
}

func TestServentRejectsBadInput(t *testing.T) {
	_, addr := startServent(t, ServentConfig{})
	good, _ := offerFor(t, bins["hello"])
	badHash := good
	badHash.Hash = "xyz"
	badRank := good
	badRank.Rank = 5
	oldVersion := good
	oldVersion.Version = 99
	for name, tc := range map[string]struct {
		raw  []byte
		msg  *ctl
		want string
	}{
		"not json":      {raw: frame(frameCtl, []byte("{nope")), want: "bad control message"},
		"not control":   {raw: frame(frameStdout, []byte("x")), want: "want a control frame"},
		"too large":     {raw: []byte{0x7f, 0, 0, 0, 'C'}, want: "frame too large"},
		"empty frame":   {raw: []byte{0, 0, 0, 0}, want: "empty frame"},
		"unknown op":    {msg: &ctl{Op: "launch", Version: ProtocolVersion}, want: `unknown op "launch"`},
		"bad hash":      {msg: &badHash, want: "is not a sha256"},
		"bad rank":      {msg: &badRank, want: "offer for rank 5 of 1"},
		"wrong version": {msg: &oldVersion, want: "protocol version 99"},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			if tc.msg != nil {
				c.send(*tc.msg)
			} else if _, err := c.conn.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			m := c.recv()
			if m.Op != opError || !strings.Contains(m.Error, tc.want) {
				t.Fatalf("got %+v, want error containing %q", m, tc.want)
			}
		})
	}
	t.Run("wrong binary", func(t *testing.T) {
		c := dial(t, addr)
		c.send(good)
		if acc := c.recv(); !acc.NeedBinary {
			t.Skip("binary already cached")
		}
		c.fw.write(frameBinary, []byte("not the program"))
		c.send(ctl{Op: opBinaryEnd})
		if m := c.recv(); m.Op != opError || !strings.Contains(m.Error, "binary hash") {
			t.Fatalf("got %+v", m)
		}
	})
}

func frame(t byte, p []byte) []byte {
	b := make([]byte, 5+len(p))
	binary.BigEndian.PutUint32(b, uint32(len(p)+1))
	b[4] = t
	copy(b[5:], p)
	return b
}

func TestServentAuth(t *testing.T) {
	key := []byte("0123456789abcdef")
	_, addr := startServent(t, ServentConfig{Key: key})
	c := dial(t, addr)
	if c.nonce == "" {
		t.Fatal("no nonce from a keyed servent")
	}
	c.send(ctl{Op: opStatus, Version: ProtocolVersion, Auth: authProof([]byte("fedcba9876543210"), c.nonce)})
	if m := c.recv(); m.Op != opError || !strings.Contains(m.Error, "does not hold this cluster's key") {
		t.Fatalf("wrong key: %+v", m)
	}
	c = dial(t, addr)
	c.send(ctl{Op: opStatus, Version: ProtocolVersion, Auth: authProof(key, c.nonce)})
	if m := c.recv(); m.Op != opRanks {
		t.Fatalf("right key: %+v", m)
	}
}

func TestServentLocate(t *testing.T) {
	_, addr := startServent(t, ServentConfig{Locate: func(need sched.Need) []NodeInfo {
		return Locate([]NodeInfo{
			{Name: "big", Slots: 4, FreeSlots: 4, Mem: 8 << 30, FreeMem: 8 << 30},
			{Name: "small", Slots: 4, FreeSlots: 4, Mem: 1 << 30, FreeMem: 1 << 30},
			{Name: "tiny", Slots: 4, FreeSlots: 4, Mem: 1 << 20, FreeMem: 1 << 20},
		}, need)
	}})
	c := dial(t, addr)
	c.send(ctl{Op: opLocate, Version: ProtocolVersion, Mem: 512 << 20})
	m := c.recv()
	if m.Op != opNodes || len(m.Nodes) != 2 || m.Nodes[0].Name != "small" || m.Nodes[1].Name != "big" {
		t.Fatalf("locate: %+v", m)
	}
}

func TestServentShutdownDrains(t *testing.T) {
	s, addr := startServent(t, ServentConfig{})
	offer, _ := offerFor(t, bins["sleeper"])
	offer.Args = []string{"300ms"}
	c := dial(t, addr)
	c.send(offer)
	if acc := c.recv(); acc.NeedBinary {
		c.ship(bins["sleeper"])
	}
	if m := c.recv(); m.Op != opStarted {
		t.Fatalf("%+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if m := c.recv(); m.Op != opExit || m.Result.Status != 0 {
		t.Fatalf("drained rank: %+v %+v", m, m.Result)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("servent still accepts after Shutdown")
	}
}
