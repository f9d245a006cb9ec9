//go:build race

package fault_test

// raceEnabled: under `go test -race` the engine binary is built with -race
// too, so the race detector watches the engines while they are killed.
const raceEnabled = true
