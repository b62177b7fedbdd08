package lookup

import (
	"errors"
	"fmt"
	"maps"
)

// InstanceID names one channel instance inside a space. IDs are assigned
// 1, 2, 3, ... in creation order and never reused within a space.
type InstanceID uint64

// SessionID names one client connection. The value 0 is reserved
// ([NoSession]): the driver must number sessions from 1.
type SessionID uint64

// ReqID names one request of a session. Replies carry the (Session, Req)
// pair of the request they answer, so a ReqID need only be unique within its
// session while the request is outstanding.
type ReqID uint64

// NoSession is the zero SessionID. It means "no session" in
// [Info.WriterSession] (for example after the writer's connection was lost)
// and is rejected in events.
const NoSession SessionID = 0

// ElemAny in [Attach.Elem] accepts an instance of any element type.
const ElemAny uint8 = 255

// DefaultLease is the lease, in ticks, used when [Config.Lease] is zero.
const DefaultLease int64 = 3600

// State is the state of a channel instance or of a name entry, after
// Figure 5 of the π-Spaces paper. A name entry is only ever [StateEmpty] or
// [StateReaderWaiting]; an instance is one of the other five.
type State uint8

// The paper's states (ST Empty, ST W, ST Avail, ST ROpen Wait, ST RW,
// ST R Wait) plus Deleted, which the paper leaves implicit.
const (
	// StateEmpty: a name entry with nobody waiting on it; also the state of
	// an instance that does not exist.
	StateEmpty State = iota
	// StateWriting: an unsealed instance with no reader attached.
	StateWriting
	// StateAvailable: a sealed instance; readers read it from the cache.
	StateAvailable
	// StateReaderWaiting: a name entry with attach requests waiting for a
	// Create (the paper's ST ROpen Wait).
	StateReaderWaiting
	// StateReadWrite: an unsealed instance with at least one reader.
	StateReadWrite
	// StateReaderAhead: an unsealed instance with at least one reader parked
	// at the current end of the stream (the paper's ST R Wait).
	StateReaderAhead
	// StateDeleted: the instance's space was deleted.
	StateDeleted
)

var stateNames = [...]string{
	StateEmpty:         "Empty",
	StateWriting:       "Writing",
	StateAvailable:     "Available",
	StateReaderWaiting: "ReaderWaiting",
	StateReadWrite:     "ReadWrite",
	StateReaderAhead:   "ReaderAhead",
	StateDeleted:       "Deleted",
}

// String returns the state's name, e.g. "ReadWrite".
func (st State) String() string {
	if int(st) < len(stateNames) {
		return stateNames[st]
	}
	return fmt.Sprintf("State(%d)", uint8(st))
}

// Config configures a [Space]. The zero value is valid.
type Config struct {
	// Lease is how many ticks a space with no user survives before it is
	// reclaimed with all its data. The count starts at the last CloseSpace
	// (or SessionLost) that left zero users. Zero or negative means
	// [DefaultLease].
	Lease int64
}

func (c Config) lease() int64 {
	if c.Lease <= 0 {
		return DefaultLease
	}
	return c.Lease
}

// Info is a snapshot of one channel instance. Attrs is a copy: changing it
// does not change the space.
type Info struct {
	ID            InstanceID
	Name          string
	Elem          uint8
	Attrs         map[string]string
	WriterKey     string
	State         State
	Length        int64 // durable length in bytes as last reported
	Sealed        bool  // the writer closed the instance at Length
	Read          bool  // some reader reached its end-of-stream
	WriterSession SessionID
	DirectAddr    string // writer's address for the direct path
}

// Sentinel errors. Replies and Step wrap them with detail; test with
// errors.Is. A rejected event's error wraps ErrIllegal and, where there is
// a more specific reason, that sentinel too.
var (
	ErrIllegal      = errors.New("lookup: illegal event for state")
	ErrNotFound     = errors.New("lookup: no such channel")
	ErrElemType     = errors.New("lookup: element type mismatch")
	ErrCanceled     = errors.New("lookup: attach canceled")
	ErrNotWriter    = errors.New("lookup: not the writer")
	ErrSealed       = errors.New("lookup: channel sealed")
	ErrSpaceDeleted = errors.New("lookup: space deleted")
)

func cloneAttrs(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}
