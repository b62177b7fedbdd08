package comm

import (
	"errors"
	"fmt"

	"github.com/pispace/pispace/comm/internal/proto"
)

// Errors returned by this package. Errors that a server reports arrive as
// these sentinels wrapped with the server's explanation, so callers test
// them with errors.Is.
var (
	ErrClosed       = errors.New("comm: closed")
	ErrUnknownSpace = errors.New("comm: unknown space")
	ErrNotFound     = errors.New("comm: no such channel")
	ErrElemType     = errors.New("comm: element type mismatch")
	ErrSealed       = errors.New("comm: channel already closed by its writer")
	ErrDiverged     = errors.New("comm: replayed bytes differ from the stored ones")
	ErrNotWriter    = errors.New("comm: not the channel's writer")
	ErrProtocol     = errors.New("comm: protocol error")
	ErrTooLarge     = errors.New("comm: frame too large")
	ErrSpaceDeleted = errors.New("comm: space deleted")
	ErrGap          = errors.New("comm: offset beyond the stored data")
	ErrTrimmed      = errors.New("comm: bytes trimmed from the space")
	ErrServer       = errors.New("comm: server error")
	ErrPartial      = errors.New("comm: partial element")
)

// remoteError turns an Error frame into a sentinel wrapped with the
// server's message.
func remoteError(e *proto.Error) error {
	var base error
	switch e.Code {
	case proto.CodeUnknownSpace:
		base = ErrUnknownSpace
	case proto.CodeNotFound:
		base = ErrNotFound
	case proto.CodeElemType:
		base = ErrElemType
	case proto.CodeSealed:
		base = ErrSealed
	case proto.CodeDiverged:
		base = ErrDiverged
	case proto.CodeNotWriter:
		base = ErrNotWriter
	case proto.CodeProtocol:
		base = ErrProtocol
	case proto.CodeTooLarge:
		base = ErrTooLarge
	case proto.CodeSpaceDeleted:
		base = ErrSpaceDeleted
	case proto.CodeGap:
		base = ErrGap
	case proto.CodeTrimmed:
		base = ErrTrimmed
	case proto.CodeCanceled:
		base = errCanceled
	case proto.CodeOutOfWindow:
		base = errOutOfWindow
	default:
		base = ErrServer
	}
	return &RemoteError{Base: base, Code: e.Code, Msg: e.Msg, At: e.At}
}

// RemoteError is an error a server (or, on the direct path, a writer)
// reported. It unwraps to one of the package's sentinels.
type RemoteError struct {
	Base error  // the sentinel
	Code uint16 // the wire code
	Msg  string // the remote explanation
	At   int64  // an offset the code comes with (the writer's, for an out-of-window subscribe)
}

func (e *RemoteError) Error() string { return fmt.Sprintf("%v: %s", e.Base, e.Msg) }
func (e *RemoteError) Unwrap() error { return e.Base }

// isConnErr reports whether err is a connection failure rather than an
// answer from the peer.
func isConnErr(err error) bool {
	var re *RemoteError
	return err != nil && !errors.As(err, &re)
}

// Internal conditions that never reach callers as such.
var (
	errCanceled    = errors.New("comm: request canceled")
	errOutOfWindow = errors.New("comm: offset not at the writer's position")
)
