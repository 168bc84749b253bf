//go:build race

package reliability

// raceEnabled: the suite runs with -race, so the server it builds does too.
const raceEnabled = true
