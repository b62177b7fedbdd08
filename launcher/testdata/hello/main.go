// Command hello prints one line naming its rank, from pirun's environment.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("hello from rank %s of %s (incarnation %s, job %s, comm %s, space %s, min %s)\n",
		os.Getenv("PIRUN_RANK"), os.Getenv("PIRUN_SIZE"), os.Getenv("PIRUN_INCARNATION"),
		os.Getenv("PIRUN_JOB"), os.Getenv("PIRUN_COMM"), os.Getenv("PIRUN_SPACE"), os.Getenv("PIRUN_MIN"))
	if v := os.Getenv("HELLO_EXTRA"); v != "" {
		fmt.Println("extra", v)
	}
	fmt.Fprintln(os.Stderr, "to stderr", os.Getenv("PIRUN_RANK"))
}
