package lookup

import (
	"fmt"
	"strings"
)

// Event is an input to [Space.Step]. It is implemented only by the event
// types of this package; Step also accepts a non-nil pointer to any of them.
type Event interface{ isEvent() }

// OpenSpace: Session started using the space. A session may open a space
// several times; each open needs its own CloseSpace. Cancels a running lease.
type OpenSpace struct{ Session SessionID }

// CloseSpace: Session stopped using the space once. When the last user
// closes, the space is deleted if every instance is sealed and read, or else
// its lease starts.
type CloseSpace struct{ Session SessionID }

// Tick carries logical time. Now must not decrease (a smaller Now is
// ignored). Drives lease expiry.
type Tick struct{ Now int64 }

// Create makes a new instance of Name, or resumes the instance of Name with
// the same non-empty WriterKey. Answered by [ReplyCreate].
type Create struct {
	Req        ReqID
	Session    SessionID
	Name       string
	Elem       uint8
	Attrs      map[string]string
	WriterKey  string
	DirectAddr string
}

// Attach asks for an instance of Name to read: the oldest unread one, or
// with Any the oldest one; with Instance nonzero exactly that instance.
// Elem [ElemAny] accepts any element type. With Wait and nothing to return
// the request waits for a Create. Answered by [ReplyAttach] or [ReplyError].
type Attach struct {
	Req      ReqID
	Session  SessionID
	Name     string
	Elem     uint8
	Any      bool
	Wait     bool
	Instance InstanceID
}

// CancelAttach withdraws the waiting request (Session, Req), which is then
// answered with [ErrCanceled]: an Attach waiting for a Create, or a
// ReaderWait parked at the end of an instance. Rejected if that request is
// not waiting (for example because it was answered already).
type CancelAttach struct {
	Req     ReqID
	Session SessionID
}

// Appended reports that the cache holds Length bytes of Instance durably.
// A Length not above the current one is ignored.
type Appended struct {
	Instance InstanceID
	Length   int64
}

// ReaderWait: a reader of Instance reached Offset and wants a [Wake] when
// the instance grows past Offset or is sealed. It also registers Session as
// a reader of the instance.
type ReaderWait struct {
	Req      ReqID
	Session  SessionID
	Instance InstanceID
	Offset   int64
}

// Close: the writer sealed Instance at Length. Answered by [ReplyClose].
type Close struct {
	Req      ReqID
	Session  SessionID
	Instance InstanceID
	Length   int64
}

// ReadDone: a reader reached the end of the sealed Instance, which is then
// marked read.
type ReadDone struct {
	Session  SessionID
	Instance InstanceID
}

// Detach drops Session's reader registration on Instance (its parked
// ReaderWaits are answered with [ErrCanceled]), or, if Session is not a
// reader but the writer, its writer registration.
type Detach struct {
	Session  SessionID
	Instance InstanceID
}

// SetAttr sets one attribute of Instance. Answered by [ReplyOK].
type SetAttr struct {
	Req        ReqID
	Session    SessionID
	Instance   InstanceID
	Key, Value string
}

// SessionLost: Session's connection vanished. Its waiting requests are
// dropped unanswered, its reader and writer registrations removed, and its
// opens of the space count as CloseSpace.
type SessionLost struct{ Session SessionID }

func (OpenSpace) isEvent()    {}
func (CloseSpace) isEvent()   {}
func (Tick) isEvent()         {}
func (Create) isEvent()       {}
func (Attach) isEvent()       {}
func (CancelAttach) isEvent() {}
func (Appended) isEvent()     {}
func (ReaderWait) isEvent()   {}
func (Close) isEvent()        {}
func (ReadDone) isEvent()     {}
func (Detach) isEvent()       {}
func (SetAttr) isEvent()      {}
func (SessionLost) isEvent()  {}

// deref turns a pointer event into its value; ok is false for nil.
func deref(ev Event) (Event, bool) {
	switch e := ev.(type) {
	case nil:
		return nil, false
	case *OpenSpace:
		return derefPtr(e)
	case *CloseSpace:
		return derefPtr(e)
	case *Tick:
		return derefPtr(e)
	case *Create:
		return derefPtr(e)
	case *Attach:
		return derefPtr(e)
	case *CancelAttach:
		return derefPtr(e)
	case *Appended:
		return derefPtr(e)
	case *ReaderWait:
		return derefPtr(e)
	case *Close:
		return derefPtr(e)
	case *ReadDone:
		return derefPtr(e)
	case *Detach:
		return derefPtr(e)
	case *SetAttr:
		return derefPtr(e)
	case *SessionLost:
		return derefPtr(e)
	}
	return ev, true
}

func derefPtr[T Event](p *T) (Event, bool) {
	if p == nil {
		return nil, false
	}
	return *p, true
}

// request returns the (Session, Req) an event must be answered on, if it is
// a request. CancelAttach is not: its Req names the Attach it cancels.
func request(ev Event) (reqKey, bool) {
	switch e := ev.(type) {
	case Create:
		return reqKey{e.Session, e.Req}, true
	case Attach:
		return reqKey{e.Session, e.Req}, true
	case ReaderWait:
		return reqKey{e.Session, e.Req}, true
	case Close:
		return reqKey{e.Session, e.Req}, true
	case SetAttr:
		return reqKey{e.Session, e.Req}, true
	}
	return reqKey{}, false
}

// session returns the session an event comes from, if it has one.
func session(ev Event) (SessionID, bool) {
	switch e := ev.(type) {
	case OpenSpace:
		return e.Session, true
	case CloseSpace:
		return e.Session, true
	case CancelAttach:
		return e.Session, true
	case ReadDone:
		return e.Session, true
	case Detach:
		return e.Session, true
	case SessionLost:
		return e.Session, true
	}
	if k, ok := request(ev); ok {
		return k.sess, true
	}
	return NoSession, false
}

func eventName(ev Event) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", ev), "lookup.")
}
