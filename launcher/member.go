package launcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/memberlist"
)

// Membership profiles.
const (
	// ProfileAuto picks ProfileTuned for a loopback bind address, else ProfileLAN.
	ProfileAuto = "auto"
	// ProfileLAN is memberlist's DefaultLANConfig: for real networks.
	ProfileLAN = "lan"
	// ProfileTuned spreads joins in tens of milliseconds and declares a
	// crashed node dead in about a second: for loopback, tests and the
	// embedded cluster. It trades false suspicions on a loaded machine for speed.
	ProfileTuned = "tuned"
)

// memberConfig builds the memberlist configuration of a profile for bind
// ("host:port"; port 0 picks one).
func memberConfig(profile, bind string) (*memberlist.Config, error) {
	host, portStr, err := net.SplitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("%w: bind address %q: %v", ErrUsage, bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: bind port %q", ErrUsage, portStr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if profile == ProfileAuto || profile == "" {
		profile = ProfileLAN
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			profile = ProfileTuned
		}
	}
	var c *memberlist.Config
	switch profile {
	case ProfileLAN:
		c = memberlist.DefaultLANConfig()
	case ProfileTuned:
		c = tunedConfig()
	default:
		return nil, fmt.Errorf("%w: unknown profile %q (auto, lan, tuned)", ErrUsage, profile)
	}
	c.BindAddr, c.BindPort = host, port
	c.AdvertisePort = port
	return c, nil
}

// tunedConfig: see LIBS.md section 1. RetransmitMult stays at 4 so concurrent
// joins spread in a few gossip rounds; SuspicionMult 2 gives a 400 ms
// suspicion window (k=0: no confirmations needed).
func tunedConfig() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 150 * time.Millisecond
	c.IndirectChecks = 2
	c.SuspicionMult = 2
	c.SuspicionMaxTimeoutMult = 4
	c.RetransmitMult = 4
	c.GossipInterval = 20 * time.Millisecond
	c.GossipNodes = 4
	c.PushPullInterval = 5 * time.Second
	c.GossipToTheDeadTime = 5 * time.Second
	c.TCPTimeout = time.Second
	return c
}

// ParseKey decodes a cluster key given as hex or base64 text (hex first); it must be 16,
// 24 or 32 bytes (AES-128/192/256-GCM).
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	var key []byte
	if b, err := hex.DecodeString(text); err == nil {
		key = b
	} else if b, err := base64.StdEncoding.DecodeString(text); err == nil {
		key = b
	} else {
		return nil, fmt.Errorf("%w: cluster key is neither base64 nor hex", ErrUsage)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("%w: cluster key is %d bytes, want 16, 24 or 32", ErrUsage, len(key))
}

// logFilter turns memberlist's log lines into slog records: [DEBUG] and
// [INFO] are dropped, [WARN] and [ERR] go to the logger.
type logFilter struct{ log *slog.Logger }

func (f logFilter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		switch {
		case strings.Contains(s, "[ERR]"):
			f.log.Warn("memberlist", "msg", s[strings.Index(s, "[ERR]")+6:])
		case strings.Contains(s, "[WARN]"):
			f.log.Debug("memberlist", "msg", s[strings.Index(s, "[WARN]")+7:])
		}
	}
	return len(p), nil
}

// memberOpts configures one membership participant.
type memberOpts struct {
	Name    string // from memberName
	Profile string
	Bind    string
	Key     []byte
	Events  bool // deliver join/leave/update events
	Logger  *slog.Logger
	Meta    []byte // initial metadata
}

// memberEvent is a change in the membership view.
type memberEvent struct {
	leave bool
	info  NodeInfo
}

// member is one memberlist participant with its metadata and its own copy
// of the membership view. The view is kept from the event callbacks, never
// from Members(): memberlist mutates the *Node values Members() returns, so
// reading them races with its packet handler.
type member struct {
	ml     *memberlist.Memberlist
	events chan memberEvent // nil unless memberOpts.Events
	addr_  string           // gossip host:port
	viewMu sync.Mutex
	view   map[string]NodeInfo
	meta   atomic.Pointer[[]byte]
	update chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	gossip time.Duration
}

type delegate struct{ m *member }

func (d delegate) NodeMeta(limit int) []byte {
	b := *d.m.meta.Load()
	if len(b) > limit {
		return nil // encodeMeta guarantees this does not happen
	}
	return b
}
func (delegate) NotifyMsg([]byte) {}

// events implements memberlist.EventDelegate; memberlist calls it serially.
type events struct{ m *member }

func (e events) NotifyJoin(n *memberlist.Node)   { e.m.apply(n, false) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.m.apply(n, false) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.m.apply(n, true) }

// apply updates the view and forwards the change; it blocks only while the
// events buffer is full and the member is open.
func (m *member) apply(n *memberlist.Node, leave bool) {
	info, ok := decodeMember(n)
	if !ok {
		return
	}
	m.viewMu.Lock()
	if leave {
		delete(m.view, info.Name)
	} else {
		m.view[info.Name] = info
	}
	m.viewMu.Unlock()
	if m.events != nil {
		select {
		case m.events <- memberEvent{leave: leave, info: info}:
		case <-m.done:
		}
	}
}

func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// memberName returns prefix-<uuidv7>, a member name unique per incarnation
// (memberlist silently rejects duplicate names).
func memberName(prefix string) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return prefix + "-" + id.String(), nil
}

// newMember creates the memberlist instance (bound, not joined).
func newMember(o memberOpts) (*member, error) {
	c, err := memberConfig(o.Profile, o.Bind)
	if err != nil {
		return nil, err
	}
	c.Name = o.Name
	m := &member{update: make(chan struct{}, 1), done: make(chan struct{}), gossip: c.GossipInterval,
		view: map[string]NodeInfo{}}
	meta := o.Meta
	m.meta.Store(&meta)
	c.Delegate = delegate{m}
	if o.Events {
		m.events = make(chan memberEvent, 1024)
	}
	c.Events = events{m}
	c.SecretKey = o.Key
	c.LogOutput = io.Discard
	if o.Logger != nil {
		c.LogOutput = logFilter{o.Logger}
	}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("launcher: start membership on %s: %w", o.Bind, err)
	}
	m.ml = ml
	m.addr_ = net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.AdvertisePort))
	if c.AdvertiseAddr == "" {
		local := ml.LocalNode() // no gossip has arrived yet: safe to read
		m.addr_ = local.Address()
	}
	m.wg.Add(1)
	go m.updater()
	return m, nil
}

func (m *member) addr() string { return m.addr_ }

// join contacts seeds until one answers, ctx ends or a key mismatch shows.
func (m *member) join(ctx context.Context, seeds []string) error {
	backoff := 50 * time.Millisecond
	for {
		_, err := m.ml.Join(seeds)
		if err == nil {
			return nil
		}
		if isKeyError(err) {
			return fmt.Errorf("%w: join %s: %v", ErrNoKey, strings.Join(seeds, ","), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %v", ErrJoin, strings.Join(seeds, ","), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func isKeyError(err error) bool {
	s := err.Error()
	for _, sub := range []string{"no installed keys could decrypt", "encryption is not configured",
		"remote state is not encrypted", "Encryption is configured but", "No installed keys"} {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// setMeta replaces the metadata and schedules its broadcast.
func (m *member) setMeta(b []byte) {
	m.meta.Store(&b)
	select {
	case m.update <- struct{}{}:
	default:
	}
}

// updater broadcasts metadata changes one at a time, coalescing bursts.
func (m *member) updater() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case <-m.update:
			m.ml.UpdateNode(time.Second)
		}
	}
}

// members returns the view's live members with role.
func (m *member) members(role string) []NodeInfo {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	var out []NodeInfo
	for _, info := range m.view {
		if info.Role == role {
			out = append(out, info)
		}
	}
	return out
}

// leave announces a graceful exit, waits linger so the retransmits go out
// (peers otherwise may mark the member failed rather than left), and shuts
// down. Safe to call more than once.
func (m *member) leave(timeout, linger time.Duration) {
	m.once.Do(func() {
		close(m.done)
		m.wg.Wait()
		if timeout > 0 {
			m.ml.Leave(timeout)
			time.Sleep(linger)
		}
		m.ml.Shutdown()
	})
}

// kill shuts down without a leave: peers find out through failure detection.
func (m *member) kill() { m.leave(0, 0) }

func (m *member) gossipInterval() time.Duration { return m.gossip }

// keyFromEnv reads the cluster key from a key file or PIRUN_KEY.
func keyFromEnv(keyFile string, getenv func(string) string) ([]byte, error) {
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: key file: %v", ErrUsage, err)
		}
		return ParseKey(string(b))
	}
	if s := getenv("PIRUN_KEY"); s != "" {
		return ParseKey(s)
	}
	return nil, nil
}
