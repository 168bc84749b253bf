//go:build !race

package reliability

// raceEnabled: the suite runs without -race, and so does the server.
const raceEnabled = false
