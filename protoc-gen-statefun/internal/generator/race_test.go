//go:build race

package generator

func init() { raceEnabled = true }
