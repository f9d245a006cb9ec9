//go:build !linux

package rebuild

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
