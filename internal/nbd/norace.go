//go:build !race

package nbd

// raceEnabled: built with the race detector (see race.go).
const raceEnabled = false
