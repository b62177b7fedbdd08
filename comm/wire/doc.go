// Package wire is the framing layer of every pispace protocol: versioned,
// length-prefixed frames with a maximum size, and the field codec their
// payloads are written with.
//
// A frame is a fixed 12-byte header followed by its payload:
//
//	offset size field
//	0      1    version (currently 1)
//	1      1    type (meaning defined by the protocol that uses the frame)
//	2      2    flags, little-endian (reserved bits must be zero)
//	4      4    request id, little-endian (0 when the frame answers nothing)
//	8      4    payload length, little-endian
//
// The decoder is a resumable parser ([Parser]): it accepts the byte stream
// in any chunking, keeps its state between calls, and rejects a frame whose
// version is unknown or whose length exceeds the configured maximum before
// reading its payload, so a peer cannot make it allocate more than that
// maximum. A decode error is final for the stream it came from: the caller
// closes that one connection and keeps serving everyone else.
//
// Payload fields are encoded with [Enc] and decoded with [Dec], whose error
// is sticky: a truncated or malformed payload yields a single error at the
// end rather than a panic or a partial value.
package wire
