//go:build race

package nbd

// raceEnabled: the race detector slows memory devices past fastDeviceNs.
const raceEnabled = true
