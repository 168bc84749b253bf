package statefun

// EncodeCallForTest encodes c as a stored timer's or sent call's payload,
// for tests that write timers straight into a store.
func EncodeCallForTest(c *Call) []byte {
	b, err := encodeCall(c, nil)
	if err != nil {
		panic(err)
	}
	return b
}
