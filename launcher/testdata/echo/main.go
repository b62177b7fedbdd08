// Command echo copies its stdin to stdout line by line.
package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	s := bufio.NewScanner(os.Stdin)
	for s.Scan() {
		fmt.Println("echo:", s.Text())
	}
}
