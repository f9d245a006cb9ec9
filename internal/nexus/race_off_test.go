//go:build !race

package nexus

const raceEnabled = false
