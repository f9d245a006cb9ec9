//go:build race

package nvmetcp

// raceEnabled: overlapping concurrent writes to a malloc device are
// allowed by the Device contract but reported by the race detector.
const raceEnabled = true
