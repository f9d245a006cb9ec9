// Command kura is Kura's single binary: the storage engine daemons and the
// client commands. See "kura --help".
package main

import "github.com/kura-io/kura/internal/cli"

func main() { cli.Execute() }
