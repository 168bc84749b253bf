package kafkabroker

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger hands franz-go's logs to slog. franz-go's info level narrates
// the group protocol (joins, syncs, heartbeats) at a rate that would drown
// the runtime's own info logs, so it goes to debug; its debug level (every
// request) goes below debug.
type kgoLogger struct{ l *slog.Logger }

const slogTrace = slog.LevelDebug - 4

func slogLevel(l kgo.LogLevel) slog.Level {
	switch l {
	case kgo.LogLevelError:
		return slog.LevelError
	case kgo.LogLevelWarn:
		return slog.LevelWarn
	case kgo.LogLevelInfo:
		return slog.LevelDebug
	default:
		return slogTrace
	}
}

// Level is the most verbose franz-go level the handler takes: franz-go
// skips building the messages of the levels above it.
func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	for _, l := range []kgo.LogLevel{kgo.LogLevelDebug, kgo.LogLevelInfo, kgo.LogLevelWarn, kgo.LogLevelError} {
		if k.l.Enabled(ctx, slogLevel(l)) {
			return l
		}
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	k.l.Log(context.Background(), slogLevel(level), "kafka client: "+msg, keyvals...)
}
