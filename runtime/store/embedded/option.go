package embedded

// Option configures Open.
type Option interface {
	apply(*options)
}

type options struct {
	noSync bool
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithNoSync skips the fsyncs at the end of each commit when noSync is
// true.
//
// It is unsafe: a commit may then return before its data reaches the disk,
// so a crash or power loss can lose acknowledged events, or leave the file
// damaged. Use it only in tests and benchmarks that measure something other
// than the disk.
func WithNoSync(noSync bool) Option {
	return optionFunc(func(o *options) { o.noSync = noSync })
}
