// Command exit3 exits 3 on rank EXIT3_RANK (default 1) and 0 elsewhere.
package main

import (
	"fmt"
	"os"
)

func main() {
	r := os.Getenv("EXIT3_RANK")
	if r == "" {
		r = "1"
	}
	if os.Getenv("PIRUN_RANK") == r {
		fmt.Println("rank", r, "exits 3")
		os.Exit(3)
	}
}
