package proto

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/pispace/pispace/comm/wire"
)

func allMsgs() []Msg {
	return []Msg{&Hello{}, &Error{}, &SpaceReq{}, &Create{}, &Attach{}, &Info{}, &Cancel{}, &Ref{},
		&Close{}, &Read{}, &EOF{}, &SetAttr{}, &Stat{}, &Subscribe{}, &Trim{}, &Trimmed{}}
}

// FuzzUnmarshal decodes arbitrary payloads as every message type: never a
// panic, and whatever decodes cleanly re-encodes to the same bytes' meaning
// (decode(encode(m)) == m).
func FuzzUnmarshal(f *testing.F) {
	f.Add(AppendMsg(nil, TCreate, 1, &Create{Space: "s", Name: "n", Elem: 10, Key: "k", Attrs: map[string]string{"a": "b"}})[wire.HeaderSize:])
	f.Add(AppendMsg(nil, TInfo, 1, &Info{Instance: 3, Name: "x", Length: 99, Sealed: true})[wire.HeaderSize:])
	f.Add(AppendMsg(nil, TTrim, 1, &Trim{Space: "s", Instance: 3, From: 1 << 20, To: 5 << 20})[wire.HeaderSize:])
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range allMsgs() {
			if err := Unmarshal(data, m); err != nil {
				continue
			}
			again := AppendMsg(nil, 1, 1, m)[wire.HeaderSize:]
			fresh := allMsgs()
			var m2 Msg
			for _, c := range fresh {
				if sameType(c, m) {
					m2 = c
				}
			}
			if err := Unmarshal(again, m2); err != nil {
				t.Fatalf("%T: re-encoded message does not decode: %v", m, err)
			}
			if !bytes.Equal(AppendMsg(nil, 1, 1, m2), AppendMsg(nil, 1, 1, m)) && !hasMap(m) {
				t.Fatalf("%T: round trip changed the message", m)
			}
		}
		if _, _, _, rest, err := DecodeData(data); err == nil {
			if pos, n, err := SharedRef(rest); err == nil {
				f := AppendSharedData(nil, TWrite, 1, "s", 1, 0, pos, n)
				_, _, _, ref, err := DecodeData(f[wire.HeaderSize:])
				if p2, n2, err2 := SharedRef(ref); err != nil || err2 != nil || p2 != pos || n2 != n {
					t.Fatalf("shared reference (%d, %d) re-encoded as (%d, %d), %v %v", pos, n, p2, n2, err, err2)
				}
			}
		}
	})
}

func sameType(a, b Msg) bool { return fmt.Sprintf("%T", a) == fmt.Sprintf("%T", b) }

func hasMap(m Msg) bool {
	switch m.(type) {
	case *Create, *Info:
		return true
	}
	return false
}

// A shared data frame carries its reference and the flag, and a reference
// that is empty, truncated or followed by junk is refused.
func TestSharedData(t *testing.T) {
	f := AppendSharedData(nil, TWrite, 7, "sp", 3, 1<<40, 1<<33, 1<<20)
	_, fr, ok, err := wire.NewParser(0).Feed(f)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if fr.Flags != FlagShared || fr.Type != TWrite || fr.Req != 7 {
		t.Fatalf("frame %+v", fr)
	}
	space, inst, off, ref, err := DecodeData(fr.Payload)
	if err != nil || space != "sp" || inst != 3 || off != 1<<40 {
		t.Fatalf("prefix %q %d %d %v", space, inst, off, err)
	}
	if pos, n, err := SharedRef(ref); err != nil || pos != 1<<33 || n != 1<<20 {
		t.Fatalf("reference (%d, %d), %v", pos, n, err)
	}
	for _, bad := range [][]byte{ref[:len(ref)-1], append(ref[:len(ref):len(ref)], 0), {5, 0}, nil} {
		if _, _, err := SharedRef(bad); err == nil {
			t.Errorf("SharedRef(%x) accepted", bad)
		}
	}
}

// Data frame headers decode back to what was encoded and, given room,
// cost no allocation (they are written once per data frame).
func TestDataHeader(t *testing.T) {
	body := []byte("payload")
	b := AppendDataHeader(nil, TWrite, 7, "space", 42, 1<<40, len(body))
	b = append(b, body...)
	f, err := wire.NewReader(bytes.NewReader(b), 1<<20).Next()
	if err != nil || f.Type != TWrite || f.Req != 7 {
		t.Fatalf("frame %+v: %v", f, err)
	}
	space, inst, off, data, err := DecodeData(f.Payload)
	if err != nil || space != "space" || inst != 42 || off != 1<<40 || !bytes.Equal(data, body) {
		t.Fatalf("decoded %q %d %d %q: %v", space, inst, off, data, err)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { AppendDataHeader(buf[:0], TData, 1, "space", 42, 99, 10) }); n != 0 {
		t.Fatalf("%v allocations per header", n)
	}
}
