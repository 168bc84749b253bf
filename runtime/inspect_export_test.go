package statefun

import "github.com/statefun-go/statefun/runtime/internal/console"

// ConsoleSource returns what the console reads, for tests.
func (r *Runtime) ConsoleSource() console.Source { return r.consoleSource() }
