package kafkabroker

import "time"

// WithQueueLimit makes subscriptions pause fetching a partition once n of
// its records wait, so that tests reach the pausing with few records.
func WithQueueLimit(n int) Option {
	return optionFunc(func(c *config) { c.queueLimit = n })
}

// WithCommitInterval spaces the periodic commits; tests stretch it so
// that only the commits at revocation and at the end are made.
func WithCommitInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.commitInterval = d })
}
