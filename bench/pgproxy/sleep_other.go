//go:build !linux

package pgproxy

import "time"

// Elsewhere the delay falls back to Go's timers, which may add up to a
// millisecond; Stats reports the delay actually applied.

func holdThread()    {}
func releaseThread() {}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
