package comm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/wire"
)

// Space is an open π-space: a namespace of channels. It is safe for
// concurrent use.
type Space struct {
	c    *Client
	name string
	addr string

	mu     sync.Mutex // serialises requests on ctl
	ctl    *conn
	stale  *conn // a control connection a cut call left out of step, kept open until ctl replaces it (see withCtl)
	closed bool
}

// Name returns the space's name.
func (s *Space) Name() string { return s.name }

// Info describes a channel instance.
type Info struct {
	Instance uint64            // unique in the space, increasing in creation order
	Name     string            // the channel's name
	Elem     Elem              // element type fixed at creation
	Key      string            // writer key, "" if none
	Length   int64             // bytes stored in the cache so far
	Sealed   bool              // the writer closed it
	Attrs    map[string]string // attributes
}

func infoFrom(p *proto.Info) Info {
	return Info{Instance: p.Instance, Name: p.Name, Elem: Elem(p.Elem), Key: p.Key,
		Length: p.Length, Sealed: p.Sealed, Attrs: p.Attrs}
}

// CreateOption configures [Space.Create].
type CreateOption func(*createOpts)

type createOpts struct {
	elem   Elem
	attrs  map[string]string
	key    string
	offset int64
}

// WithElem fixes the channel's element type (default Bytes).
func WithElem(e Elem) CreateOption { return func(o *createOpts) { o.elem = e } }

// WithAttrs sets attributes at creation.
func WithAttrs(a map[string]string) CreateOption { return func(o *createOpts) { o.attrs = a } }

// WithWriterKey names the writer. Creating again with the same name and key
// resumes the same instance instead of making a new one: this is how a
// restarted process continues its channel without duplicating data.
func WithWriterKey(key string) CreateOption { return func(o *createOpts) { o.key = key } }

// WithOffset makes a resumed writer's next byte land at off. Bytes written
// below the stored length are compared with the stored ones and dropped
// (ErrDiverged if they differ). Default 0.
func WithOffset(off int64) CreateOption { return func(o *createOpts) { o.offset = off } }

// Create makes a new channel instance named name and returns its writer.
// It never waits for a reader. Two creates of one name make two instances,
// which readers attach in creation order. Errors: ErrUnknownSpace (the
// space was deleted), ErrClosed, dial failures, ctx.Err().
func (s *Space) Create(ctx context.Context, name string, opts ...CreateOption) (*Writer, error) {
	var o createOpts
	for _, f := range opts {
		f(&o)
	}
	if !o.elem.Valid() {
		return nil, fmt.Errorf("comm: create %q: %w: %v", name, ErrElemType, o.elem)
	}
	if o.offset < 0 {
		return nil, fmt.Errorf("comm: create %q: negative offset %d", name, o.offset)
	}
	return newWriter(ctx, s, name, o)
}

// AttachOption configures [Space.Attach] and [Space.AttachAny].
type AttachOption func(*attachOpts)

type attachOpts struct {
	elem     Elem
	noWait   bool
	offset   int64
	instance uint64
}

// ExpectElem makes the attach fail with ErrElemType unless the channel
// carries elements of type e. Default: any type, read as bytes.
func ExpectElem(e Elem) AttachOption { return func(o *attachOpts) { o.elem = e } }

// NoWait makes the attach fail with ErrNotFound instead of waiting when no
// instance exists.
func NoWait() AttachOption { return func(o *attachOpts) { o.noWait = true } }

// AtOffset starts reading at off (a restarted reader resuming).
func AtOffset(off int64) AttachOption { return func(o *attachOpts) { o.offset = off } }

// AtInstance attaches that exact instance (from [Reader.Info]), whatever
// its read state.
func AtInstance(id uint64) AttachOption { return func(o *attachOpts) { o.instance = id } }

// Attach returns a reader on the oldest instance of name that no reader has
// read to its end, waiting until one exists unless [NoWait] is given, or
// until ctx is done. Several readers may attach one instance; each gets
// every byte. Errors: ErrNotFound (NoWait), ErrElemType, ErrUnknownSpace,
// ErrClosed, ctx.Err().
func (s *Space) Attach(ctx context.Context, name string, opts ...AttachOption) (*Reader, error) {
	return s.attach(ctx, name, false, opts)
}

// AttachAny is [Space.Attach] but may return an instance already read to
// its end: the oldest instance of name, whatever its read state.
func (s *Space) AttachAny(ctx context.Context, name string, opts ...AttachOption) (*Reader, error) {
	return s.attach(ctx, name, true, opts)
}

func (s *Space) attach(ctx context.Context, name string, anyInst bool, opts []AttachOption) (*Reader, error) {
	o := attachOpts{elem: AnyElem}
	for _, f := range opts {
		f(&o)
	}
	if o.offset < 0 {
		return nil, fmt.Errorf("comm: attach %q: negative offset %d", name, o.offset)
	}
	r, err := newReader(ctx, s, name, anyInst, o)
	if errors.Is(err, ErrElemType) {
		if info, serr := s.Stat(ctx, name); serr == nil {
			return nil, fmt.Errorf("comm: attach %q as %v: channel carries %v: %w", name, o.elem, info.Elem, ErrElemType)
		}
	}
	return r, err
}

// Stat describes the newest instance of name. Errors: ErrNotFound,
// ErrUnknownSpace, ErrClosed, ctx.Err().
func (s *Space) Stat(ctx context.Context, name string) (Info, error) {
	var info *proto.Info
	err := s.withCtl(ctx, func(c *conn) (err error) {
		info, err = c.callInfo(ctx, proto.TStat, &proto.Stat{Space: s.name, Name: name})
		return err
	})
	if err != nil {
		return Info{}, fmt.Errorf("comm: stat %q: %w", name, err)
	}
	return infoFrom(info), nil
}

// SetAttr sets one attribute of instance id (from [Writer.Info] or
// [Reader.Info]); later attaches and Stat see it in [Info.Attrs]. Errors:
// ErrNotFound, ErrUnknownSpace, ErrClosed, ctx.Err().
func (s *Space) SetAttr(ctx context.Context, id uint64, key, value string) error {
	err := s.withCtl(ctx, func(c *conn) error {
		_, err := c.callCtx(ctx, proto.TSetAttr, &proto.SetAttr{Space: s.name, Instance: id, Key: key, Value: value})
		return err
	})
	if err != nil {
		return fmt.Errorf("comm: set attribute %q of instance %d: %w", key, id, err)
	}
	return nil
}

// Trim tells the space that nobody will read the bytes of instance id
// (from [Writer.Info] or [Reader.Info]) in [from, to) again: not this
// process, not another reader, not a reader resuming after a crash. The
// server then discards the whole segments of cached bytes within that
// range (1 MiB each by default; the open tail segment and segments the
// range cuts are kept), which frees their memory and spill files for the
// bytes still to come: a long-lived channel whose consumer trims what it
// has consumed costs the space a bounded amount. It returns how many
// bytes this call discarded. Reading discarded bytes fails with
// ErrTrimmed; a writer that replays bytes there (re-created with its key
// after a restart) has them accepted unchecked. Errors: ErrNotFound,
// ErrProtocol (a negative or reversed range), ErrClosed, ctx.Err().
func (s *Space) Trim(ctx context.Context, id uint64, from, to int64) (int64, error) {
	var dropped int64
	err := s.withCtl(ctx, func(c *conn) error {
		f, err := c.callCtx(ctx, proto.TTrim, &proto.Trim{Space: s.name, Instance: id, From: from, To: to})
		if err != nil {
			return err
		}
		var m proto.Trimmed
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		dropped = m.Dropped
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("comm: trim instance %d [%d, %d): %w", id, from, to, err)
	}
	return dropped, nil
}

// withCtl runs f on the control connection, redialling it if an earlier
// cancelled call left it broken.
//
// The server counts this client as a user of the space through the
// connection that opened it, and a connection that goes away counts as
// leaving: a last user gone deletes a space whose data was all read, or
// starts its lease. So a control connection that a cut call left out of
// step (a reply may still come) is not closed at once: it stays open,
// aside, until a new one has opened the space, and only then goes.
func (s *Space) withCtl(ctx context.Context, f func(*conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.ctl == nil {
		c, err := s.dialCtl(ctx)
		if err != nil {
			return ctxErr(ctx, err)
		}
		s.ctl = c
		if s.stale != nil {
			s.stale.close()
			s.stale = nil
		}
	}
	err := f(s.ctl)
	switch {
	case ctx.Err() != nil: // maybe cut (out of step, or a deadline set to cut it), but this client's hold on the space
		if s.stale != nil {
			s.stale.close()
		}
		s.stale, s.ctl = s.ctl, nil
	case isConnErr(err): // broken: the server has let it go already
		s.ctl.close()
		s.ctl = nil
	}
	return ctxErr(ctx, err)
}

// dialCtl dials the space's server and opens the space on the new
// connection.
func (s *Space) dialCtl(ctx context.Context) (*conn, error) {
	c, err := s.c.dial(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.callCtx(ctx, proto.TOpenSpace, &proto.SpaceReq{Space: s.name}); err != nil {
		c.close()
		return nil, fmt.Errorf("comm: reopen space %q: %w", s.name, err)
	}
	return c, nil
}

// notify sends a frame that has no reply on the space's control
// connection, when it has one; false when it does not (or the space is
// closed, or the connection broke).
func (s *Space) notify(t wire.Type, m proto.Msg) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ctl == nil {
		return false
	}
	if err := s.ctl.sendReq(t, 0, m); err != nil {
		if isConnErr(err) {
			s.ctl.close()
			s.ctl = nil
		}
		return false
	}
	return true
}

// Close leaves the space. The last user's close deletes the space if every
// channel in it was written to its end and read; otherwise the space stays
// until its lease expires. Idempotent.
func (s *Space) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.c.forget(s)
	if s.stale != nil {
		s.stale.close() // the server counts its end as a close of the space
		s.stale = nil
	}
	if s.ctl == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { s.ctl.close() })
	defer stop()
	_, err := s.ctl.call(proto.TCloseSpace, &proto.SpaceReq{Space: s.name})
	s.ctl.close()
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("comm: close space %q: %w", s.name, err))
	}
	return nil
}
