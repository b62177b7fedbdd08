package cache_test

import (
	"context"
	"fmt"
	"io"

	"github.com/pispace/pispace/comm/cache"
)

// A writer appends and seals; a restarted writer's replay is dropped; a
// reader follows with Wait and ReadAt; OnSeal sees each sealed segment.
func Example() {
	s, err := cache.Open(cache.Config{
		SegmentSize: cache.MinSegmentSize,
		OnSeal: func(k cache.Key, index int, data []byte, crc uint32) {
			fmt.Printf("sealed %v segment %d: %d bytes, crc ok %v\n", k, index, len(data), crc == cache.Checksum(data))
		},
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	k := cache.Key{Space: "job/1", Instance: 0}

	s.Append(k, 0, []byte("hello, "))
	n, _ := s.Append(k, 0, []byte("hello, world")) // replay plus new bytes
	fmt.Println("length", n)
	s.Seal(k, n)

	buf := make([]byte, 5)
	var off int64
	for {
		n, err := s.ReadAt(k, buf, off)
		fmt.Printf("%q ", buf[:n])
		off += int64(n)
		if err == io.EOF {
			break
		}
		if n == 0 {
			s.Wait(context.Background(), k, off)
		}
	}
	fmt.Println()
	// Output:
	// length 12
	// sealed "job/1"#0 segment 0: 12 bytes, crc ok true
	// "hello" ", wor" "ld" ""
}
