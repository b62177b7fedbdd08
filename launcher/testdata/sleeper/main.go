// Command sleeper starts a child `sleep`, prints both pids with its rank and
// incarnation, then sleeps for its first argument (default 1h). With
// SLEEPER_ONLY_INC0 set, incarnations after the first exit 0 at once; with
// SLEEPER_NOCHILD set it starts no child; with SLEEPER_IGNORE set it ignores
// SIGINT and SIGTERM.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	d := time.Hour
	if len(os.Args) > 1 {
		d, _ = time.ParseDuration(os.Args[1])
	}
	rank, inc := os.Getenv("PIRUN_RANK"), os.Getenv("PIRUN_INCARNATION")
	if os.Getenv("SLEEPER_ONLY_INC0") != "" && inc != "0" {
		fmt.Printf("rank %s incarnation %s done\n", rank, inc)
		return
	}
	if os.Getenv("SLEEPER_IGNORE") != "" {
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	}
	childPid := 0
	var child *exec.Cmd
	if os.Getenv("SLEEPER_NOCHILD") == "" {
		child = exec.Command("sleep", "3600")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		childPid = child.Process.Pid
	}
	fmt.Printf("sleeping rank %s inc %s pid %d child %d\n", rank, inc, os.Getpid(), childPid)
	time.Sleep(d)
	if child != nil {
		child.Process.Kill()
		child.Wait()
	}
	fmt.Printf("rank %s inc %s woke\n", rank, inc)
}
