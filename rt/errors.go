package rt

import (
	"errors"
	"fmt"
)

// Sentinel errors. Operations wrap them, usually inside a [*RankError], so
// test with errors.Is.
var (
	// ErrClosed: the communicator was closed.
	ErrClosed = errors.New("rt: communicator closed")
	// ErrRank: a rank outside the communicator (or AnySource where a
	// definite rank is needed).
	ErrRank = errors.New("rt: rank outside the communicator")
	// ErrTag: a negative tag other than AnyTag on a receive.
	ErrTag = errors.New("rt: invalid tag")
	// ErrType: sender and receiver disagree on the element type.
	ErrType = errors.New("rt: element type mismatch")
	// ErrTruncated: the message is longer than the receive buffer. The
	// message is consumed.
	ErrTruncated = errors.New("rt: message longer than receive buffer")
	// ErrCount: buffer lengths disagree between the ranks of a collective,
	// or do not fit the operation.
	ErrCount = errors.New("rt: buffer length mismatch")
	// ErrMismatch: ranks called different collectives in the same position.
	ErrMismatch = errors.New("rt: collective mismatch")
	// ErrCorrupt: a malformed frame arrived on a channel.
	ErrCorrupt = errors.New("rt: malformed frame")
	// ErrPeerClosed: the peer closed its channel to this rank and no more
	// messages will come from it.
	ErrPeerClosed = errors.New("rt: peer closed its channel")
	// ErrTooLarge: a message longer than Config.MaxMessageBytes.
	ErrTooLarge = errors.New("rt: message too large")
	// ErrOp: a zero Op or an op that cannot apply to the element type.
	ErrOp = errors.New("rt: invalid reduction op")
	// ErrPending: Checkpoint or Restore called while receive requests are
	// posted and not yet matched.
	ErrPending = errors.New("rt: receive requests pending")
	// ErrCheckpoint: a stored checkpoint is unreadable.
	ErrCheckpoint = errors.New("rt: corrupt checkpoint")
	// ErrName: a channel name that is empty or in the reserved "_rt/" prefix.
	ErrName = errors.New("rt: invalid channel name")
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("rt: invalid config")
	// ErrEnv: the environment set by pirun is inconsistent.
	ErrEnv = errors.New("rt: invalid environment")
	// ErrNoTransport: PIRUN_COMM is set but this binary has no space
	// transport linked in.
	ErrNoTransport = errors.New("rt: no space transport")

	// errParked: a read-ahead pump stopped at a large frame (internal).
	errParked = errors.New("rt: read-ahead parked at a large frame")
)

// RankError reports a failed operation involving one peer rank. Rank is the
// peer's rank in the communicator the operation ran on (the caller's own
// rank for failures that involve no peer).
type RankError struct {
	Rank int
	Op   string
	Err  error
}

func (e *RankError) Error() string {
	return fmt.Sprintf("rt: %s rank %d: %v", e.Op, e.Rank, e.Err)
}

// Unwrap returns the underlying error.
func (e *RankError) Unwrap() error { return e.Err }

func rankErr(rank int, op string, err error) error {
	var re *RankError
	if errors.As(err, &re) {
		return err
	}
	return &RankError{Rank: rank, Op: op, Err: err}
}
