// Package proto defines the messages of the π-space protocol spoken between
// comm clients, comm servers and, for the direct path, between a writer and
// its readers. Each message is one wire frame; its payload is encoded with
// the wire field codec. Decoding checks every field and rejects trailing
// bytes, so a malformed frame is an error, never a partial message.
package proto

import (
	"fmt"
	"math"

	"github.com/pispace/pispace/comm/wire"
)

// Frame types.
const (
	THello      wire.Type = 1  // client -> server: Hello
	TOK         wire.Type = 2  // server -> client: success with no body
	TError      wire.Type = 3  // either way: Error
	TOpenSpace  wire.Type = 4  // SpaceReq
	TCloseSpace wire.Type = 5  // SpaceReq
	TCreate     wire.Type = 6  // Create -> TInfo
	TAttach     wire.Type = 7  // Attach -> TInfo
	TInfo       wire.Type = 8  // Info
	TCancel     wire.Type = 9  // Cancel (no reply)
	TWrite      wire.Type = 10 // Data, no reply unless it fails (then TError with the write's req)
	TClose      wire.Type = 11 // Close -> TInfo
	TRead       wire.Type = 12 // Read -> stream of TData, then TEOF or TError
	TData       wire.Type = 13 // Data
	TEOF        wire.Type = 14 // EOF
	TReadDone   wire.Type = 15 // Ref (no reply)
	TDetach     wire.Type = 16 // Ref -> TOK
	TSetAttr    wire.Type = 17 // SetAttr -> TOK
	TStat       wire.Type = 18 // Stat -> TInfo
	TSubscribe  wire.Type = 19 // reader -> writer (direct path): Subscribe -> TData..., TEOF
	TRing       wire.Type = 20 // Unix sockets only: the sender's shared ring (comm/internal/shm), its descriptors (and its arena's) attached; no body, no reply
	TTrim       wire.Type = 21 // Trim -> TOK with Trimmed
	TArena      wire.Type = 22 // Unix sockets only, client -> server: offer your ring with its arena, and give me slots to write in; no body, no reply
)

// FlagShared marks a data frame (TWrite, TData) whose bytes lie in the
// sender's shared ring: its data part is then a reference, two uvarints
// (the bytes' position in the ring and their count), see AppendSharedData.
// A position with its top bit set is an offset in the arena the sender
// offered with its ring (shm.ArenaRef).
const FlagShared uint16 = 1

// Version is the protocol version carried in Hello.
const Version = 1

// Magic opens every Hello.
const Magic = "pispace"

// Error codes carried by Error frames.
const (
	CodeInternal uint16 = iota + 1
	CodeProtocol
	CodeUnknownSpace
	CodeNotFound
	CodeElemType
	CodeCanceled
	CodeSealed
	CodeDiverged
	CodeNotWriter
	CodeTooLarge
	CodeOutOfWindow
	CodeSpaceDeleted
	CodeGap
	CodeShutdown
	CodeTrimmed
)

// Hello opens a connection.
type Hello struct {
	Magic   string
	Version uint64
	Peer    string // free-form client description for logs
}

func (m *Hello) Encode(e *wire.Enc) { e.String(m.Magic); e.U64(m.Version); e.String(m.Peer) }
func (m *Hello) Decode(d *wire.Dec) { m.Magic = d.String(); m.Version = d.U64(); m.Peer = d.String() }

// Welcome is the payload of the OK answering a Hello: the server's
// same-host endpoint ("unix:HOST:@NAME"), empty when it has none. Clients
// on HOST connect there instead of over TCP.
type Welcome struct {
	Local string
}

func (m *Welcome) Encode(e *wire.Enc) { e.String(m.Local) }
func (m *Welcome) Decode(d *wire.Dec) { m.Local = d.String() }

// Error reports a failed request. At carries an offset where the code
// has one to tell (CodeOutOfWindow: the writer's position).
type Error struct {
	Code uint16
	Msg  string
	At   int64
}

func (m *Error) Encode(e *wire.Enc) { e.U64(uint64(m.Code)); e.String(m.Msg); e.I64(m.At) }
func (m *Error) Decode(d *wire.Dec) { m.Code = uint16(d.U64()); m.Msg = d.String(); m.At = d.I64() }
func (m *Error) Error() string      { return fmt.Sprintf("code %d: %s", m.Code, m.Msg) }

// SpaceReq opens or closes a space.
type SpaceReq struct{ Space string }

func (m *SpaceReq) Encode(e *wire.Enc) { e.String(m.Space) }
func (m *SpaceReq) Decode(d *wire.Dec) { m.Space = d.String() }

// Create asks for a new channel instance (or the resumption of the one with
// the same writer key).
type Create struct {
	Space, Name string
	Elem        uint8
	Key         string
	DirectAddr  string
	Attrs       map[string]string
}

func (m *Create) Encode(e *wire.Enc) {
	e.String(m.Space)
	e.String(m.Name)
	e.U8(m.Elem)
	e.String(m.Key)
	e.String(m.DirectAddr)
	e.Map(m.Attrs)
}
func (m *Create) Decode(d *wire.Dec) {
	m.Space, m.Name, m.Elem = d.String(), d.String(), d.U8()
	m.Key, m.DirectAddr, m.Attrs = d.String(), d.String(), d.Map()
}

// Attach asks for an instance to read.
type Attach struct {
	Space, Name string
	Elem        uint8
	Any, Wait   bool
	Instance    uint64
}

func (m *Attach) Encode(e *wire.Enc) {
	e.String(m.Space)
	e.String(m.Name)
	e.U8(m.Elem)
	e.Bool(m.Any)
	e.Bool(m.Wait)
	e.U64(m.Instance)
}
func (m *Attach) Decode(d *wire.Dec) {
	m.Space, m.Name, m.Elem = d.String(), d.String(), d.U8()
	m.Any, m.Wait, m.Instance = d.Bool(), d.Bool(), d.U64()
}

// Info describes a channel instance.
type Info struct {
	Instance     uint64
	Name         string
	Elem         uint8
	Key          string
	Length       int64
	Sealed       bool
	WriterActive bool
	DirectAddr   string
	Resumed      bool
	Attrs        map[string]string
}

func (m *Info) Encode(e *wire.Enc) {
	e.U64(m.Instance)
	e.String(m.Name)
	e.U8(m.Elem)
	e.String(m.Key)
	e.I64(m.Length)
	e.Bool(m.Sealed)
	e.Bool(m.WriterActive)
	e.String(m.DirectAddr)
	e.Bool(m.Resumed)
	e.Map(m.Attrs)
}
func (m *Info) Decode(d *wire.Dec) {
	m.Instance, m.Name, m.Elem, m.Key = d.U64(), d.String(), d.U8(), d.String()
	m.Length, m.Sealed, m.WriterActive = d.I64(), d.Bool(), d.Bool()
	m.DirectAddr, m.Resumed, m.Attrs = d.String(), d.Bool(), d.Map()
}

// Cancel withdraws a pending request (a blocking attach, a read stream).
type Cancel struct{ Req uint64 }

func (m *Cancel) Encode(e *wire.Enc) { e.U64(m.Req) }
func (m *Cancel) Decode(d *wire.Dec) { m.Req = d.U64() }

// Ref names an instance.
type Ref struct {
	Space    string
	Instance uint64
}

func (m *Ref) Encode(e *wire.Enc) { e.String(m.Space); e.U64(m.Instance) }
func (m *Ref) Decode(d *wire.Dec) { m.Space = d.String(); m.Instance = d.U64() }

// Close seals an instance at Length.
type Close struct {
	Space    string
	Instance uint64
	Length   int64
}

func (m *Close) Encode(e *wire.Enc) { e.String(m.Space); e.U64(m.Instance); e.I64(m.Length) }
func (m *Close) Decode(d *wire.Dec) { m.Space = d.String(); m.Instance = d.U64(); m.Length = d.I64() }

// Read asks for a stream of an instance's bytes from Offset. With Follow the
// stream waits for new bytes until the instance is sealed or, when Until is
// positive, until it has sent the bytes below Until; without Follow it ends
// (TEOF with Sealed false) at the current length.
type Read struct {
	Space    string
	Instance uint64
	Offset   int64
	Follow   bool
	Until    int64
}

func (m *Read) Encode(e *wire.Enc) {
	e.String(m.Space)
	e.U64(m.Instance)
	e.I64(m.Offset)
	e.Bool(m.Follow)
	e.I64(m.Until)
}
func (m *Read) Decode(d *wire.Dec) {
	m.Space, m.Instance, m.Offset, m.Follow, m.Until = d.String(), d.U64(), d.I64(), d.Bool(), d.I64()
}

// EOF ends a read stream at Length; Sealed says whether the writer closed.
type EOF struct {
	Length int64
	Sealed bool
}

func (m *EOF) Encode(e *wire.Enc) { e.I64(m.Length); e.Bool(m.Sealed) }
func (m *EOF) Decode(d *wire.Dec) { m.Length = d.I64(); m.Sealed = d.Bool() }

// SetAttr sets one attribute of an instance.
type SetAttr struct {
	Space      string
	Instance   uint64
	Key, Value string
}

func (m *SetAttr) Encode(e *wire.Enc) {
	e.String(m.Space)
	e.U64(m.Instance)
	e.String(m.Key)
	e.String(m.Value)
}
func (m *SetAttr) Decode(d *wire.Dec) {
	m.Space, m.Instance, m.Key, m.Value = d.String(), d.U64(), d.String(), d.String()
}

// Stat asks for the newest instance of a name.
type Stat struct{ Space, Name string }

func (m *Stat) Encode(e *wire.Enc) { e.String(m.Space); e.String(m.Name) }
func (m *Stat) Decode(d *wire.Dec) { m.Space = d.String(); m.Name = d.String() }

// Trim lets the server discard an instance's bytes in [From, To) (whole
// segments of them): its caller knows nobody will read them again.
type Trim struct {
	Space    string
	Instance uint64
	From, To int64
}

func (m *Trim) Encode(e *wire.Enc) { e.String(m.Space); e.U64(m.Instance); e.I64(m.From); e.I64(m.To) }
func (m *Trim) Decode(d *wire.Dec) {
	m.Space, m.Instance, m.From, m.To = d.String(), d.U64(), d.I64(), d.I64()
}

// Trimmed answers a Trim: how many bytes it discarded.
type Trimmed struct{ Dropped int64 }

func (m *Trimmed) Encode(e *wire.Enc) { e.I64(m.Dropped) }
func (m *Trimmed) Decode(d *wire.Dec) { m.Dropped = d.I64() }

// Subscribe asks a writer for its bytes from Offset (direct path).
type Subscribe struct {
	Space    string
	Instance uint64
	Offset   int64
}

func (m *Subscribe) Encode(e *wire.Enc) { e.String(m.Space); e.U64(m.Instance); e.I64(m.Offset) }
func (m *Subscribe) Decode(d *wire.Dec) {
	m.Space = d.String()
	m.Instance = d.U64()
	m.Offset = d.I64()
}

// Msg is implemented by every message.
type Msg interface {
	Encode(e *wire.Enc)
	Decode(d *wire.Dec)
}

// Unmarshal decodes payload into m, rejecting malformed or trailing bytes.
func Unmarshal(payload []byte, m Msg) error {
	d := wire.NewDec(payload)
	m.Decode(d)
	if err := d.Done(); err != nil {
		return fmt.Errorf("proto: decoding %T: %w", m, err)
	}
	return nil
}

// AppendMsg appends a whole frame carrying m to dst.
func AppendMsg(dst []byte, t wire.Type, req uint32, m Msg) []byte {
	start := len(dst)
	dst = wire.AppendHeader(dst, t, 0, req, 0)
	e := wire.Enc{B: dst}
	if m != nil {
		m.Encode(&e)
	}
	dst = e.B
	n := len(dst) - start - wire.HeaderSize
	putLen(dst[start:], n)
	return dst
}

func putLen(h []byte, n int) {
	h[8], h[9], h[10], h[11] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
}

// Data frames carry raw bytes at an offset: payload = uvarint space length,
// space, uvarint instance, varint offset, then the bytes to the end. The
// bytes are not length-prefixed so a frame can be written with one header
// plus the caller's buffer (net.Buffers) without copying.

// AppendDataHeader appends the header and prefix of a data frame carrying n
// bytes; the caller sends the n bytes right after.
func AppendDataHeader(dst []byte, t wire.Type, req uint32, space string, inst uint64, off int64, n int) []byte {
	start := len(dst)
	e := wire.Enc{B: wire.AppendHeader(dst, t, 0, req, 0)}
	e.String(space)
	e.U64(inst)
	e.I64(off)
	putLen(e.B[start:], len(e.B)-start-wire.HeaderSize+n)
	return e.B
}

// AppendSharedData appends a whole data frame (FlagShared) whose n bytes
// are at pos in the sender's shared ring.
func AppendSharedData(dst []byte, t wire.Type, req uint32, space string, inst uint64, off int64, pos uint64, n int) []byte {
	start := len(dst)
	e := wire.Enc{B: wire.AppendHeader(dst, t, FlagShared, req, 0)}
	e.String(space)
	e.U64(inst)
	e.I64(off)
	e.U64(pos)
	e.U64(uint64(n))
	putLen(e.B[start:], len(e.B)-start-wire.HeaderSize)
	return e.B
}

// SharedRef decodes the data part of a FlagShared frame: the position and
// count of its bytes in the sender's ring.
func SharedRef(data []byte) (pos uint64, n int, err error) {
	d := wire.NewDec(data)
	pos = d.U64()
	c := d.U64()
	if err := d.Done(); err != nil {
		return 0, 0, fmt.Errorf("proto: shared data reference: %w", err)
	}
	if c == 0 || c > math.MaxInt32 {
		return 0, 0, fmt.Errorf("proto: shared data reference: %w: %d bytes", wire.ErrProtocol, c)
	}
	return pos, int(c), nil
}

// DecodeData splits a data frame's payload.
func DecodeData(payload []byte) (space string, inst uint64, off int64, data []byte, err error) {
	d := wire.NewDec(payload)
	space = d.String()
	inst = d.U64()
	off = d.I64()
	if err := d.Err(); err != nil {
		return "", 0, 0, nil, fmt.Errorf("proto: decoding data frame: %w", err)
	}
	if off < 0 {
		return "", 0, 0, nil, fmt.Errorf("proto: data frame: %w: negative offset %d", wire.ErrProtocol, off)
	}
	return space, inst, off, d.B, nil
}
