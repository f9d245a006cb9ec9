//go:build !race

package nvmetcp

// raceSync is a no-op outside race builds (see raceon.go).
func raceSync() {}
