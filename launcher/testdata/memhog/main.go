// Command memhog allocates and touches its first argument in MiB, then
// sleeps, so a memory limit below that is exceeded.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	mib, _ := strconv.Atoi(os.Args[1])
	buf := make([]byte, mib<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	fmt.Println("allocated", mib, "MiB")
	time.Sleep(time.Minute)
	fmt.Println(buf[0])
}
