package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pispace/pispace/sched"
)

// NodeConfig configures a node: `pirun node`, or one node of the embedded
// cluster. Zero values are documented per field.
type NodeConfig struct {
	Bind        string            // gossip host:port; "" means 0.0.0.0:7946. Servent and comm listen on the same host, port 0
	Join        []string          // seeds; empty starts a new cluster
	Slots       int               // rank slots; 0 means the number of CPUs
	Procs       int               // GOMAXPROCS of each rank; 0 means 1 when Slots exceeds the CPUs (rankProcs), negative Go's default
	Mem         int64             // memory for ranks; 0 means the machine's total memory
	CacheMem    int64             // memory for the comm cache before it spills to DataDir; 0 means Mem/8, at least 256 MiB
	MaxTime     time.Duration     // longest time limit granted; 0 means none
	DataDir     string            // binary cache, rank dirs, comm spill; "" means a new temporary dir, removed on Close
	Labels      map[string]string // advertised as is
	Key         []byte            // cluster key (16, 24 or 32 bytes); nil means plaintext
	Profile     string            // ProfileAuto (""), ProfileLAN or ProfileTuned
	Grace       time.Duration     // SIGTERM to SIGKILL at a time limit; 0 means 2 s
	JoinTimeout time.Duration     // how long to keep trying the seeds; 0 means 10 s
	Logger      *slog.Logger      // nil means discard
}

// defaultCacheMem is the least memory a node's comm cache gets.
const defaultCacheMem = 256 << 20

// Node is a running node: membership, servent and comm server.
type Node struct {
	cfg     NodeConfig
	member  *member
	servent *Servent
	comm    *commHost
	info    NodeInfo
	tmpDir  string
	mu      sync.Mutex
	wg      sync.WaitGroup
	once    sync.Once
}

// StartNode starts a node and joins it to cfg.Join. It returns ErrUsage for
// a bad cfg, ErrMetaTooLarge when the labels do not fit memberlist's 512
// bytes, ErrNoKey when the cluster's key differs from cfg.Key, and ErrJoin
// when no seed answers within cfg.JoinTimeout.
func StartNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if err := fillNodeConfig(&cfg); err != nil {
		return nil, err
	}
	name, err := memberName("node")
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg}
	ok := false
	defer func() {
		if !ok {
			n.Kill()
		}
	}()
	if err := n.startServices(name); err != nil {
		return nil, err
	}
	if err := n.startMember(); err != nil {
		return nil, err
	}
	if len(cfg.Join) > 0 {
		jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
		defer cancel()
		if err := n.member.join(jctx, cfg.Join); err != nil {
			return nil, err
		}
	}
	ok = true
	return n, nil
}

func fillNodeConfig(c *NodeConfig) error {
	c.Bind = cmpOr(c.Bind, "0.0.0.0:7946")
	c.Slots = cmpOr(c.Slots, runtime.NumCPU())
	if c.Procs == 0 {
		c.Procs = rankProcs(c.Slots, runtime.NumCPU())
	}
	if c.Mem == 0 {
		c.Mem = totalMemory()
	}
	if c.CacheMem == 0 {
		// Spilling costs more than memory: a long burst of 1 MiB
		// messages ran 15-25% faster with 2 GiB than with 256 MiB.
		c.CacheMem = max(defaultCacheMem, c.Mem/8)
	}
	c.JoinTimeout = cmpOr(c.JoinTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Slots < 0 || c.Mem < 0 || c.CacheMem < 0 || c.MaxTime < 0 {
		return fmt.Errorf("%w: negative slots, memory or time", ErrUsage)
	}
	return nil
}

// startServices starts the comm server and the servent of the node named name.
func (n *Node) startServices(name string) error {
	host, _, err := net.SplitHostPort(n.cfg.Bind)
	if err != nil {
		return fmt.Errorf("%w: bind %q: %v", ErrUsage, n.cfg.Bind, err)
	}
	if n.cfg.DataDir == "" {
		if n.tmpDir, err = os.MkdirTemp("", "pirun-node-"); err != nil {
			return err
		}
		n.cfg.DataDir = n.tmpDir
	}
	sl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("launcher: servent listen: %w", err)
	}
	cl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		sl.Close()
		return fmt.Errorf("launcher: comm listen: %w", err)
	}
	spill := filepath.Join(n.cfg.DataDir, "comm")
	if err := os.MkdirAll(spill, 0o755); err != nil {
		sl.Close()
		cl.Close()
		return err
	}
	if n.comm, err = hostComm(cl, spill, n.cfg.CacheMem, n.cfg.Logger.With("part", "comm")); err != nil {
		sl.Close()
		return fmt.Errorf("launcher: comm server: %w", err)
	}
	n.info = NodeInfo{Name: name, Role: roleNode, Slots: n.cfg.Slots, FreeSlots: n.cfg.Slots, Mem: n.cfg.Mem, FreeMem: n.cfg.Mem,
		MaxTime: n.cfg.MaxTime, Labels: n.cfg.Labels, Servent: sl.Addr().String(), Comm: cl.Addr().String()}
	n.servent, err = NewServent(ServentConfig{Name: name, Slots: n.cfg.Slots, Mem: n.cfg.Mem, MaxTime: n.cfg.MaxTime,
		DataDir: n.cfg.DataDir, Key: n.cfg.Key, Grace: n.cfg.Grace, Logger: n.cfg.Logger.With("part", "servent"),
		Procs: max(n.cfg.Procs, 0), OnChange: n.publish, Locate: n.locate})
	if err != nil {
		sl.Close()
		return err
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.servent.Serve(sl) }()
	return nil
}

func (n *Node) startMember() error {
	meta, err := encodeMeta(n.info)
	if err != nil {
		return err
	}
	m, err := newMember(memberOpts{Name: n.info.Name, Profile: n.cfg.Profile, Bind: n.cfg.Bind, Key: n.cfg.Key,
		Logger: n.cfg.Logger.With("part", "memberlist"), Meta: meta})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.member = m
	n.mu.Unlock()
	return nil
}

// publish is the servent's OnChange: it republishes the metadata. Called
// with the servent's lock held, so it only stores and signals.
func (n *Node) publish(s sched.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.info.FreeSlots, n.info.FreeMem, n.info.Seq = s.FreeSlots, s.FreeMem, s.Seq
	if n.member == nil {
		return
	}
	if b, err := encodeMeta(n.info); err == nil {
		n.member.setMeta(b)
	}
}

// locate answers a locator query from the membership view.
func (n *Node) locate(need sched.Need) []NodeInfo {
	n.mu.Lock()
	m := n.member
	n.mu.Unlock()
	if m == nil {
		return nil
	}
	return Locate(m.members(roleNode), need)
}

// Locate orders the nodes that could take a rank with need now, best fit
// first (sched.Candidates), as any node's locator answers.
func Locate(nodes []NodeInfo, need sched.Need) []NodeInfo {
	byName := map[string]NodeInfo{}
	var sn []sched.Node
	for _, info := range nodes {
		byName[info.Name] = info
		sn = append(sn, info.Sched())
	}
	var out []NodeInfo
	for _, c := range sched.Candidates(sn, need) {
		out = append(out, byName[c.Name])
	}
	return out
}

// Name returns the node's member name (node-<uuidv7>).
func (n *Node) Name() string { return n.info.Name }

// Addr returns the gossip address others join through.
func (n *Node) Addr() string { return n.member.addr() }

// ServentAddr returns the servent's address.
func (n *Node) ServentAddr() string { return n.info.Servent }

// CommAddr returns the comm server's address.
func (n *Node) CommAddr() string { return n.info.Comm }

// Close leaves the cluster gracefully, then kills any rank still running and
// stops the services. Idempotent.
func (n *Node) Close() error {
	n.stop(time.Second)
	return nil
}

// Kill stops the node without leaving: peers find out through failure
// detection, as if the node had crashed. Idempotent with Close.
func (n *Node) Kill() { n.stop(0) }

func (n *Node) stop(leave time.Duration) {
	n.once.Do(func() {
		if n.member != nil {
			n.member.leave(leave, 3*n.member.gossipInterval())
		}
		if n.servent != nil {
			n.servent.Close()
		}
		if n.comm != nil {
			n.comm.Close()
		}
		n.wg.Wait()
		if n.tmpDir != "" {
			os.RemoveAll(n.tmpDir)
		}
	})
}

// totalMemory returns MemTotal from /proc/meminfo in bytes, or 0.
func totalMemory() int64 { return procKB("/proc/meminfo", "MemTotal:") }
