package main

import "io"

// runMemory is written separately; this placeholder keeps the package building.
func runMemory(args []string, stdout io.Writer) error { return nil }
