//go:build race

package nbd

// raceEnabled: built with the race detector. Raw-mode writev then writes
// its parts with syscall.Write, which tells the detector about the socket
// write (sock.writev); tests use it because the detector slows memory
// devices past fastDeviceNs.
const raceEnabled = true
