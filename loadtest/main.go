// Command loadtest measures impressiond: throughput, latency and the
// accuracy of its counts under load, and the memory and false-positive rate
// of its dedup modes.
//
//	loadtest attack [flags]   attack a running impressiond over HTTP (vegeta)
//	loadtest attack -workload frequency [flags]
//	                          ask it for frequency caps and check every answer
//	                          (sent open loop through fasthttp's client)
//	loadtest memory [flags]   fill each dedup mode in-process and report memory and accuracy
//
// Run "loadtest <command> -h" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
)

func main() {
	// The attack allocates a body per request and little else that lives;
	// collecting four times less often keeps the generator's share of the
	// CPU, which it takes from the server under test, small.
	debug.SetGCPercent(400)
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "attack":
		err = runAttack(args, os.Stdout, os.Stderr)
	case "memory":
		err = runMemory(args, os.Stdout)
	case "pin":
		err = runPin(args, os.Stdout)
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "loadtest: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
		os.Exit(1)
	}
}

// errUsage reports bad flags; the flag package has already printed why.
var errUsage = errors.New("usage error")

func usage() {
	fmt.Fprint(os.Stderr, `Usage:
  loadtest attack [flags]   attack a running impressiond over HTTP and report throughput, latency and accuracy
                            (-workload frequency: POST /api/v1/frequency, every answer checked against a warm-up)
  loadtest memory [flags]   fill each dedup mode in-process and report memory and false-positive rate
  loadtest pin [flags]      pin a running impressiond's memory or connections (docs/SECURITY.md) and report RSS and /healthz latency

Run "loadtest <command> -h" for a command's flags.
`)
}
