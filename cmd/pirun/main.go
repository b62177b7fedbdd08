// Command pirun runs pispace jobs and nodes; see package launcher.
package main

import (
	"context"
	"os"

	"github.com/pispace/pispace/launcher"
)

func main() {
	os.Exit(launcher.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
