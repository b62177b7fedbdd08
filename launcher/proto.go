package launcher

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pispace/pispace/sched"
)

// Servent protocol: every frame is a 4-byte big-endian length n, then n bytes:
// one type byte and the payload. n is at most MaxFrame. Control frames carry
// one JSON object (ctl); data frames carry raw bytes.
const (
	// MaxFrame bounds a frame's length (type byte plus payload).
	MaxFrame = 1<<20 + 1
	// chunkSize is the payload size used for binary and stdin chunks.
	chunkSize = 256 << 10
	// ProtocolVersion is the servent protocol version in every first message.
	ProtocolVersion = 1
)

const (
	frameCtl      byte = 'C' // JSON control message
	frameBinary   byte = 'B' // a chunk of the program binary (initiator -> servent)
	frameStdout   byte = 'O' // a line of the rank's stdout (servent -> initiator)
	frameStderr   byte = 'E' // a line of the rank's stderr (servent -> initiator)
	frameStdin    byte = 'I' // stdin bytes for the rank (initiator -> servent)
	frameStdinEOF byte = 'Z' // end of stdin (initiator -> servent)
)

// Control operations.
const (
	opHello     = "hello"      // servent -> client, first frame: nonce for auth
	opOffer     = "offer"      // client -> servent: run one rank
	opAccept    = "accept"     // servent -> client: reserved; NeedBinary says whether to ship it
	opDecline   = "decline"    // servent -> client: Reason, Permanent
	opBinaryEnd = "binary-end" // client -> servent: all binary chunks sent
	opStarted   = "started"    // servent -> client: PID
	opExit      = "exit"       // servent -> client: Result, last frame
	opSignal    = "signal"     // client -> servent: Signal for the rank's process group
	opLocate    = "locate"     // client -> servent: Mem, Time; reply Nodes
	opNodes     = "nodes"      // servent -> client: locator answer
	opStatus    = "status"     // client -> servent; reply Ranks
	opRanks     = "ranks"      // servent -> client: ranks running on the node
	opError     = "error"      // either way: Error, then the connection closes
)

// ctl is the one JSON shape of every control message; each op uses some fields.
type ctl struct {
	Op      string `json:"op"`
	Version int    `json:"v,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
	Auth    string `json:"auth,omitempty"`

	// offer
	Job           string        `json:"job,omitempty"`
	Rank          int           `json:"rank,omitempty"`
	Size          int           `json:"size,omitempty"`
	Incarnation   int           `json:"inc,omitempty"`
	Min           int           `json:"min,omitempty"`
	MaxRestarts   int           `json:"max_restarts"` // restarts the job allows per rank (PIRUN_MAX_RESTARTS)
	Mem           int64         `json:"mem,omitempty"`
	Time          time.Duration `json:"time,omitempty"`
	Oversubscribe bool          `json:"oversub,omitempty"`
	Hash          string        `json:"hash,omitempty"`
	BinSize       int64         `json:"binsize,omitempty"`
	Name          string        `json:"name,omitempty"`
	Args          []string      `json:"args,omitempty"`
	Env           []string      `json:"env,omitempty"`
	Dir           string        `json:"dir,omitempty"`
	Comm          string        `json:"comm,omitempty"`
	Space         string        `json:"space,omitempty"`
	Stdin         bool          `json:"stdin,omitempty"`

	// replies
	NeedBinary bool          `json:"need_binary,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Permanent  bool          `json:"permanent,omitempty"`
	Report     *sched.Node   `json:"report,omitempty"`
	PID        int           `json:"pid,omitempty"`
	Result     *RankResult   `json:"result,omitempty"`
	Signal     int           `json:"signal,omitempty"`
	Nodes      []NodeInfo    `json:"nodes,omitempty"`
	Ranks      []RunningRank `json:"ranks,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// RankResult is what a servent reports when a rank ends.
type RankResult struct {
	Kind    string        `json:"kind"` // exit, signal, time, memory, stopped, start, lost
	Status  int           `json:"status"`
	Reason  string        `json:"reason,omitempty"`
	Wall    time.Duration `json:"wall"`
	CPU     time.Duration `json:"cpu"`
	PeakMem int64         `json:"peak_mem"`
}

// RunningRank is one rank a servent runs, as `pirun status` shows it.
type RunningRank struct {
	Job         string        `json:"job"`
	Rank        int           `json:"rank"`
	Incarnation int           `json:"inc"`
	PID         int           `json:"pid"`
	Running     time.Duration `json:"running"`
	Program     string        `json:"program"`
}

// frameReader reads frames from a buffered connection. Not safe for
// concurrent use.
type frameReader struct{ r *bufio.Reader }

func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: bufio.NewReaderSize(r, 64<<10)} }

// next returns the next frame's type and payload. The payload is a fresh
// slice owned by the caller.
func (fr *frameReader) next() (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return 0, nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, MaxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// nextCtl reads a frame that must be a control message.
func (fr *frameReader) nextCtl() (ctl, error) {
	t, p, err := fr.next()
	if err != nil {
		return ctl{}, err
	}
	if t != frameCtl {
		return ctl{}, fmt.Errorf("%w: want a control frame, got type %q", ErrProtocol, t)
	}
	return decodeCtl(p)
}

func decodeCtl(p []byte) (ctl, error) {
	var c ctl
	if err := json.Unmarshal(p, &c); err != nil {
		return ctl{}, fmt.Errorf("%w: bad control message: %v", ErrProtocol, err)
	}
	if c.Op == "" {
		return ctl{}, fmt.Errorf("%w: control message without op", ErrProtocol)
	}
	return c, nil
}

// frameWriter writes frames; safe for concurrent use.
type frameWriter struct {
	mu      sync.Mutex
	w       io.Writer
	timeout time.Duration
	setDL   func(time.Time) error
}

type deadliner interface{ SetWriteDeadline(time.Time) error }

func newFrameWriter(w io.Writer, timeout time.Duration) *frameWriter {
	fw := &frameWriter{w: w, timeout: timeout}
	if d, ok := w.(deadliner); ok && timeout > 0 {
		fw.setDL = d.SetWriteDeadline
	}
	return fw
}

func (fw *frameWriter) write(t byte, p []byte) error {
	if len(p)+1 > MaxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(p)+1, MaxFrame)
	}
	buf := make([]byte, 5+len(p))
	binary.BigEndian.PutUint32(buf, uint32(len(p)+1))
	buf[4] = t
	copy(buf[5:], p)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.setDL != nil {
		fw.setDL(time.Now().Add(fw.timeout))
	}
	_, err := fw.w.Write(buf)
	return err
}

func (fw *frameWriter) ctl(c ctl) error {
	p, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("launcher: encode %s: %w", c.Op, err)
	}
	return fw.write(frameCtl, p)
}
