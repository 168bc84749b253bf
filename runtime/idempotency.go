package statefun

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/runtime/internal/journal"
	"github.com/statefun-go/statefun/runtime/store"
)

// IdempotencyKeyHeader is the gRPC metadata key (and HTTP header) that
// makes a command safe to retry: a retry that carries the key of an
// earlier call to the same entity gets that call's answer, reply or error,
// without the command running again. The name is the one Stripe and
// Restate use.
const IdempotencyKeyHeader = "idempotency-key"

// maxIdempotencyKeyBytes bounds keys: they are stored with every outcome.
// A UUID is 36 bytes.
const maxIdempotencyKeyBytes = 256

// DefaultIdempotencyRetention is how long an outcome is kept for retries.
const DefaultIdempotencyRetention = 24 * time.Hour

// WithIdempotencyRetention sets how long the answer of a command that
// carried an idempotency key is kept; a retry after that runs the command
// again. Default 24 hours.
func WithIdempotencyRetention(d time.Duration) Option {
	return optionFunc(func(c *config) { c.idempotencyRetention = d })
}

// idempotencyKey returns the request's key, or "" when it has none.
func idempotencyKey(ctx context.Context) (string, error) {
	// ValueFromIncomingContext reads one key without copying the
	// request's metadata: this runs on every command.
	values := metadata.ValueFromIncomingContext(ctx, IdempotencyKeyHeader)
	switch {
	case len(values) == 0 || (len(values) == 1 && values[0] == ""):
		return "", nil
	case len(values) > 1:
		return "", status.Errorf(codes.InvalidArgument, "the request has %d %s values; send one", len(values), IdempotencyKeyHeader)
	case len(values[0]) > maxIdempotencyKeyBytes:
		return "", status.Errorf(codes.InvalidArgument, "the %s is %d bytes, over the limit of %d; use a shorter key such as a UUID", IdempotencyKeyHeader, len(values[0]), maxIdempotencyKeyBytes)
	case !utf8.ValidString(values[0]):
		return "", status.Errorf(codes.InvalidArgument, "the %s is not valid UTF-8; use a UUID or another printable key", IdempotencyKeyHeader)
	}
	return values[0], nil
}

// answer is what a command with an idempotency key answered, as kept in
// memory until it is durable and the store can be asked instead.
type answer struct {
	commit *journal.Commit // the commit that stores it
	method string
	reply  []byte // when code is OK
	code   codes.Code
	msg    string
}

// answers holds an instance's recent answers. It is bounded: once an
// answer is durable the store has it, so the oldest are forgotten, and
// forgotten counts them so that a lookup that raced with forgetting asks
// the store again.
type answers struct {
	byKey map[string]*answer
	order []string
}

// maxAnswersInMemory bounds an instance's answers kept in memory.
const maxAnswersInMemory = 64

// remember records a staged answer. Called with inst.mu held exclusively.
func (i *instance[S]) remember(key string, a *answer) {
	if i.answers == nil {
		i.answers = &answers{byKey: map[string]*answer{}}
	}
	as := i.answers
	as.byKey[key] = a
	as.order = append(as.order, key)
	for len(as.order) > maxAnswersInMemory {
		oldest := as.byKey[as.order[0]]
		if oldest != nil && !isDone(oldest.commit) {
			break // still needed until its commit is durable
		}
		delete(as.byKey, as.order[0])
		as.order = as.order[1:]
		i.forgotten.Add(1)
	}
}

// recall returns the answer to key this instance decided, if it still
// holds it. Called with inst.mu held.
func (i *instance[S]) recall(key string) *answer {
	if i.answers == nil {
		return nil
	}
	return i.answers.byKey[key]
}

// envelope is how an answer's method and reply are stored in an
// Outcome's Reply: {string method = 1; bytes reply = 2;}. The method lets
// a retry that reuses a key for another call be refused.
func encodeEnvelope(method string, reply []byte) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, method)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, reply)
}

func decodeEnvelope(b []byte) (method string, reply []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, errors.New("stored answer is corrupt")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return "", nil, errors.New("stored answer is corrupt")
			}
			method, b = v, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", nil, errors.New("stored answer is corrupt")
			}
			reply, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", nil, errors.New("stored answer is corrupt")
			}
			b = b[n:]
		}
	}
	return method, reply, nil
}

// unansweredKey is the context value of a call whose caller knows of no
// earlier call with its idempotency key that may have been answered: the
// first delivery of a timer. Such a command does not ask the store for an
// earlier answer, which saves a database round trip per delivery. If the
// caller was wrong (a delivery's commit landed, and the process died
// before it recorded the timer as delivered), nothing is applied twice: the
// store refuses a commit whose outcome's key is already answered (a
// ConflictError), the command fails, and the caller's retry, which asks
// the store, gets the first answer. It is a context value, not metadata,
// so that no remote caller can set it.
type unansweredKey struct{}

// withUnansweredKey marks ctx as the context of a call with the
// idempotency key key that, as far as its caller knows, was never made
// before.
func withUnansweredKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, unansweredKey{}, key)
}

// keyUnanswered reports whether the caller marked key as never used
// before. The key must match: a call made from within the marked one
// inherits its context but not the mark.
func keyUnanswered(ctx context.Context, key string) bool {
	v, _ := ctx.Value(unansweredKey{}).(string)
	return v != "" && v == key
}

// storedAnswer asks the store for the answer to key on entity id, within
// the load deadline.
func (h *Host[S]) storedAnswer(ctx context.Context, id, key string) (*answer, error) {
	lctx, cancel := context.WithTimeout(ctx, h.rt.cfg.commitTimeout)
	defer cancel()
	out, found, err := h.rt.store.LoadOutcome(lctx, store.Ref{Type: h.cfg.Type, ID: id}, key)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "look up idempotency key of %s/%s: %v; retry the call", h.cfg.Type, id, err)
	}
	if !found {
		return nil, nil
	}
	a := &answer{code: codes.Code(out.Code), msg: out.Message}
	a.method, a.reply, err = decodeEnvelope(out.Reply)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "idempotency key of %s/%s: %v", h.cfg.Type, id, err)
	}
	return a, nil
}

// replay returns a recorded answer as the call's result.
func replay[R proto.Message](ctx context.Context, key string, a *answer) (R, error) {
	var zero R
	if method, _ := grpc.Method(ctx); method != "" && a.method != "" && method != a.method {
		return zero, status.Errorf(codes.InvalidArgument, "idempotency key %q was used for %s on this entity; a key names one call, so use a new key for this one", key, a.method)
	}
	if a.code != codes.OK {
		return zero, status.Error(a.code, a.msg)
	}
	reply := zero.ProtoReflect().New().Interface().(R)
	if err := proto.Unmarshal(a.reply, reply); err != nil {
		return zero, status.Errorf(codes.Internal, "decode the recorded reply for idempotency key %q: %v", key, err)
	}
	return reply, nil
}

// newAnswer records what the handler answered, for the key.
func newAnswer(ctx context.Context, reply proto.Message, err error) (*answer, error) {
	method, _ := grpc.Method(ctx)
	a := &answer{method: method}
	if err != nil {
		st := status.Convert(err)
		a.code, a.msg = st.Code(), st.Message()
		return a, nil
	}
	b, merr := proto.MarshalOptions{Deterministic: true}.Marshal(reply)
	if merr != nil {
		return nil, status.Errorf(codes.Internal, "encode the reply to record it for its idempotency key: %v", merr)
	}
	a.reply = b
	return a, nil
}

func (h *Host[S]) outcome(id, key string, a *answer) store.Outcome {
	o := store.Outcome{
		Entity:  store.Ref{Type: h.cfg.Type, ID: id},
		Key:     key,
		Code:    uint32(a.code),
		Message: a.msg,
		Expires: time.Now().Add(h.rt.cfg.idempotencyRetention),
	}
	o.Reply = encodeEnvelope(a.method, a.reply)
	return o
}

// expireOutcomes deletes expired outcomes, a bounded amount per call.
func (r *Runtime) expireOutcomes(ctx context.Context) {
	for range 10 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := r.store.ExpireOutcomes(cctx, time.Now(), 10000)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("deleting expired idempotency keys failed; retrying later", "error", err)
			}
			return
		}
		if n < 10000 {
			return
		}
	}
}

// unknownOutcome is what a caller whose change may or may not be stored
// is told: UNAVAILABLE, as with any failed commit, with a message that
// says the difference and an ErrorInfo a program can test for.
func unknownOutcome(cause error) error {
	st := status.New(codes.Unavailable, fmt.Sprintf("outcome unknown: the change may or may not have been applied (%v); retry with the same idempotency key, which returns the original answer if it was", cause))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "OUTCOME_UNKNOWN", Domain: "statefun"}); err == nil {
		st = d
	}
	return st.Err()
}

// transient reports whether a handler's refusal with code asks the caller
// to retry later rather than answering: such refusals are not stored as
// an idempotency key's outcome, or a retry with the key would get them
// back until the key expired.
func transient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}
