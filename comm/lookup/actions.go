package lookup

// Action is an output of a [Space], returned by [Space.Ready] for the driver
// to execute. Reply actions and [Wake] go to the connection of their
// Session; [DeleteInstance] and [DeleteSpace] go to the cache.
type Action interface{ isAction() }

// ReplyCreate answers a [Create]. Resumed is true when an existing instance
// was resumed by WriterKey; Info then holds its current Length and Sealed.
type ReplyCreate struct {
	Req     ReqID
	Session SessionID
	Info    Info
	Resumed bool
}

// ReplyAttach answers an [Attach] with the instance to read.
type ReplyAttach struct {
	Req     ReqID
	Session SessionID
	Info    Info
}

// ReplyClose answers a [Close] with the sealed instance.
type ReplyClose struct {
	Req     ReqID
	Session SessionID
	Info    Info
}

// ReplyOK answers a [SetAttr].
type ReplyOK struct {
	Req     ReqID
	Session SessionID
}

// ReplyError answers any request that failed or was rejected. Err wraps one
// of the package's sentinel errors.
type ReplyError struct {
	Req     ReqID
	Session SessionID
	Err     error
}

// Wake answers a [ReaderWait]: Instance now holds Length durable bytes
// (more than the reader's offset), or it is Sealed at Length.
type Wake struct {
	Req      ReqID
	Session  SessionID
	Instance InstanceID
	Length   int64
	Sealed   bool
}

// DeleteInstance tells the cache it may drop the instance's data.
type DeleteInstance struct{ Instance InstanceID }

// DeleteSpace tells the driver the space is gone: all its data may be
// dropped and the Space value discarded. It follows the DeleteInstance of
// every instance; after it only a rejected request's [ReplyError] (wrapping
// [ErrSpaceDeleted]) can be produced.
type DeleteSpace struct{}

func (ReplyCreate) isAction()    {}
func (ReplyAttach) isAction()    {}
func (ReplyClose) isAction()     {}
func (ReplyOK) isAction()        {}
func (ReplyError) isAction()     {}
func (Wake) isAction()           {}
func (DeleteInstance) isAction() {}
func (DeleteSpace) isAction()    {}
