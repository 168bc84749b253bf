package generator

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// workflow is a service annotated with (statefun.v1.workflow), checked and
// resolved.
type workflow struct {
	service     *protogen.Service
	file        *protogen.File
	typ         string
	state       *protogen.Message
	steps       []*step // in declaration order: the first is the default first step
	passivation time.Duration
	methods     []*method
}

// step is one step of a workflow, with the timeout and retry policy that
// apply to it: its own, else the workflow's.
type step struct {
	name    string // the stored name, "await_approval"
	goName  string // its handler method, "AwaitApproval"
	index   int    // in the steps option, for positions
	timeout time.Duration
	retry   retryPolicy
	// ownRetry is true when the step has a retry policy of its own.
	ownRetry bool
}

// retryPolicy is a RetryPolicy option, checked; zero fields leave the
// runtime's defaults.
type retryPolicy struct {
	maxAttempts    uint32
	initialBackoff time.Duration
	maxBackoff     time.Duration
	failover       string
}

// stepNamePattern is the form of a step name: stored with a workflow's
// progress, and turned into a Go method name.
var stepNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func workflowOptions(svc *protogen.Service) *statefunv1.WorkflowOptions {
	opts := svc.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Workflow) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Workflow).(*statefunv1.WorkflowOptions)
}

func (w *workflow) hasRead() bool {
	for _, m := range w.methods {
		if m.readOnly {
			return true
		}
	}
	return false
}

// readWorkflow returns the workflow a service declares, or nil when it
// declares none. Mistakes are recorded in m.diags.
func (m *model) readWorkflow(f *protogen.File, svc *protogen.Service) *workflow {
	opts := workflowOptions(svc)
	if opts == nil || consumerOptions(svc) != nil || viewOptions(svc) != nil || publisherOptions(svc) != nil {
		return nil // readConsumer, readView or readPublisher reports a consumer, view or publisher that is also a workflow
	}
	name := svc.Desc.Name()
	optsPos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, workflowExtension}, path...)...)
	}
	if entityOptions(svc) != nil {
		m.diags.add(optsPos(),
			"service %s has both (statefun.v1.entity) and (statefun.v1.workflow); a service is an entity or a workflow, so split it in two", name)
		return nil
	}
	w := &workflow{service: svc, file: f, typ: opts.GetType()}
	m.checkTypeName("workflow", string(name), w.typ, optsPos(workflowTypeField))
	w.state = m.readState(svc, "workflow", opts.GetState(), optsPos(workflowStateField))
	if opts.PassivationTimeout != nil {
		d, ok := positiveDuration(opts.GetPassivationTimeout())
		if !ok {
			m.diags.add(optsPos(workflowPassivationField),
				"passivation_timeout of workflow %s must be a positive duration; remove it to use the server's default", name)
		}
		w.passivation = d
	}
	var stepTimeout time.Duration
	if opts.StepTimeout != nil {
		d, ok := positiveDuration(opts.GetStepTimeout())
		if !ok {
			m.diags.add(optsPos(workflowStepTimeoutField),
				"step_timeout of workflow %s must be a positive duration; remove it to use the runtime's default (30 seconds)", name)
		}
		stepTimeout = d
	}
	var retry retryPolicy
	if opts.Retry != nil {
		retry = m.readRetry(opts.GetRetry(), fmt.Sprintf("the retry policy of workflow %s", name), func(path ...int32) position {
			return optsPos(append([]int32{workflowRetryField}, path...)...)
		})
	}
	m.readSteps(w, opts, stepTimeout, retry)

	w.methods = m.readMethods(svc, "workflow")
	hasStart := false
	for _, mm := range w.methods {
		if mm.start && mm.readOnly {
			m.diags.add(positionOf(mm.method.Desc, methodOptionsField, statefunExtension),
				"method %s.%s is both start and read_only; a start method changes the workflow, so remove one of the two", name, mm.method.Desc.Name())
		}
		hasStart = hasStart || mm.start
	}
	if !hasStart {
		m.diags.add(positionOf(svc.Desc),
			"workflow %s has no start method; mark the RPC that starts it with option (statefun.v1.method).start = true", name)
	}
	return w
}

// readSteps reads and checks the steps of w, with the step timeout and
// retry policy of the workflow as their defaults.
func (m *model) readSteps(w *workflow, opts *statefunv1.WorkflowOptions, stepTimeout time.Duration, retry retryPolicy) {
	svc := w.service
	name := svc.Desc.Name()
	if len(opts.GetSteps()) == 0 {
		m.diags.add(positionOf(svc.Desc, serviceOptionsField, workflowExtension),
			"workflow %s has no steps; declare them in (statefun.v1.workflow), one entry each, such as steps: {name: \"first_step\"}; each is a method of its handler", name)
		return
	}
	byName := map[string]*step{}
	byGoName := map[string]*step{}
	n := workflowNames{serviceNames(svc)}
	for i, so := range opts.GetSteps() {
		at := func(path ...int32) position { return stepPosition(svc, i, path...) }
		s := &step{name: so.GetName(), index: i, timeout: stepTimeout, retry: retry}
		switch {
		case s.name == "":
			m.diags.add(at(), "step %d of workflow %s has no name; set its name, such as name: \"charge_card\"", i+1, name)
			continue
		case !stepNamePattern.MatchString(s.name):
			m.diags.add(at(stepNameField),
				"step name %q of workflow %s is not valid; use lowercase letters, digits and '_', starting with a letter, at most 64 characters (for example %q)", s.name, name, snake(s.name))
			continue
		case byName[s.name] != nil:
			m.diags.add(at(stepNameField), "step %s is declared twice in workflow %s; give each step its own name", s.name, name)
			continue
		}
		// Known from here on, so that a failover to it is not reported
		// too when its Go name is refused.
		byName[s.name] = s
		s.goName = goCamelCase(s.name)
		if prev := byGoName[s.goName]; prev != nil {
			m.diags.add(at(stepNameField),
				"steps %s and %s of workflow %s both become the Go method %s.%s; rename one of them", prev.name, s.name, name, n.handler(), s.goName)
			continue
		}
		if n.stepVar(s) == n.stepContext() {
			m.diags.add(at(stepNameField),
				"step name %q of workflow %s would name its Go value %s, which is the name of its step context; choose another name", s.name, name, n.stepVar(s))
			continue
		}
		byGoName[s.goName] = s
		if so.Timeout != nil {
			d, ok := positiveDuration(so.GetTimeout())
			if !ok {
				m.diags.add(at(stepTimeoutField),
					"timeout of step %s of workflow %s must be a positive duration; remove it to use the workflow's step_timeout", s.name, name)
			}
			s.timeout = d
		}
		if so.Retry != nil {
			s.ownRetry = true
			s.retry = m.readRetry(so.GetRetry(), fmt.Sprintf("the retry policy of step %s of workflow %s", s.name, name), func(path ...int32) position {
				return at(append([]int32{stepRetryField}, path...)...)
			})
		}
		w.steps = append(w.steps, s)
	}

	// Failovers, now that every step is known.
	if f := retry.failover; f != "" && byName[f] == nil {
		m.diags.add(positionOf(svc.Desc, serviceOptionsField, workflowExtension, workflowRetryField, retryFailoverField),
			"failover %q of the retry policy of workflow %s is not one of its steps; name one of: %s", f, name, stepList(w))
	}
	for _, s := range w.steps {
		f := s.retry.failover
		switch {
		case f == "":
		case s.ownRetry && byName[f] == nil:
			m.diags.add(stepPosition(svc, s.index, stepRetryField, retryFailoverField),
				"failover %q of step %s of workflow %s is not one of its steps; name one of: %s", f, s.name, name, stepList(w))
		case s.ownRetry && f == s.name:
			m.diags.add(stepPosition(svc, s.index, stepRetryField, retryFailoverField),
				"step %s of workflow %s fails over to itself; name another step (a compensation), or remove failover to let the workflow fail once attempts are used up", s.name, name)
		case !s.ownRetry && f == s.name:
			m.diags.add(stepPosition(svc, s.index),
				"step %s of workflow %s takes the workflow's retry policy, whose failover is %s itself; give step %s a retry policy of its own, so that its last failed attempt ends the workflow instead of running it again", s.name, name, s.name, s.name)
		}
	}
}

// readRetry checks a retry policy; owner names it in messages, and at
// points at its fields.
func (m *model) readRetry(p *statefunv1.RetryPolicy, owner string, at func(path ...int32) position) retryPolicy {
	r := retryPolicy{maxAttempts: p.GetMaxAttempts(), failover: p.GetFailover()}
	ok := true
	for _, b := range []struct {
		d     *durationpb.Duration
		field int32
		name  string
		into  *time.Duration
	}{
		{p.InitialBackoff, retryInitialBackoffField, "initial_backoff", &r.initialBackoff},
		{p.MaxBackoff, retryMaxBackoffField, "max_backoff", &r.maxBackoff},
	} {
		if b.d == nil {
			continue
		}
		d, positive := positiveDuration(b.d)
		if !positive {
			m.diags.add(at(b.field), "%s of %s must be a positive duration; remove it to use the default", b.name, owner)
			ok = false
		}
		*b.into = d
	}
	if ok && r.initialBackoff > 0 && r.maxBackoff > 0 && r.initialBackoff > r.maxBackoff {
		m.diags.add(at(retryInitialBackoffField), "initial_backoff of %s (%s) is longer than its max_backoff (%s); make it shorter, or raise max_backoff",
			owner, shortDuration(r.initialBackoff), shortDuration(r.maxBackoff))
	}
	if r.failover != "" && r.maxAttempts == 0 {
		m.diags.add(at(retryFailoverField), "failover of %s never runs: max_attempts is 0 (no limit), so the step is retried forever; set max_attempts", owner)
	}
	return r
}

// stepPosition returns where the field path below step i of svc's
// workflow option is written, else where the step is, else what
// positionOfElement finds for the list (compilers differ in what they
// record inside an option's value).
func stepPosition(svc *protogen.Service, i int, path ...int32) position {
	list := []int32{serviceOptionsField, workflowExtension, workflowStepsField}
	locs := svc.Desc.ParentFile().SourceLocations()
	if base := locs.ByDescriptor(svc.Desc).Path; base != nil {
		full := append(append(append(append([]int32(nil), base...), list...), int32(i)), path...)
		for n := len(full); n > len(base)+len(list); n-- {
			if loc := locs.ByPath(full[:n]); loc.Path != nil {
				return position{file: svc.Desc.ParentFile().Path(), line: loc.StartLine + 1, col: loc.StartColumn + 1}
			}
		}
	}
	return positionOfElement(svc.Desc, int32(i), list...)
}

// positiveDuration converts d, reporting whether it is valid and positive.
func positiveDuration(d *durationpb.Duration) (time.Duration, bool) {
	if d.CheckValid() != nil || d.AsDuration() <= 0 {
		return 0, false
	}
	return d.AsDuration(), true
}

func stepList(w *workflow) string {
	names := make([]string, len(w.steps))
	for i, s := range w.steps {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// goCamelCase returns the Go name protoc-gen-go gives a proto name, as
// google.golang.org/protobuf/internal/strs.GoCamelCase does: a '_' before a
// lowercase letter is dropped and the letter capitalised, other '_' are
// kept, and a digit ends a word. A step's method is named so, like an
// RPC's.
func goCamelCase(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && i+1 < len(s) && isASCIILower(s[i+1]):
		case c == '.':
			b = append(b, '_')
		case c == '_' && (i == 0 || s[i-1] == '.'):
			b = append(b, 'X')
		case c == '_' && i+1 < len(s) && isASCIILower(s[i+1]):
		case '0' <= c && c <= '9':
			b = append(b, c)
		default:
			if isASCIILower(c) {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			for ; i+1 < len(s) && isASCIILower(s[i+1]); i++ {
				b = append(b, s[i+1])
			}
		}
	}
	return string(b)
}

func isASCIILower(c byte) bool { return 'a' <= c && c <= 'z' }

// snake turns "AwaitApproval" or "await-approval" into "await_approval",
// for suggestions.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r + 'a' - 'A')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9' && i > 0, r == '_':
			b.WriteRune(r)
		case r == '-' || r == ' ' || r == '.':
			b.WriteByte('_')
		}
	}
	out := strings.TrimLeft(b.String(), "_")
	if len(out) > 64 {
		out = out[:64]
	}
	if !stepNamePattern.MatchString(out) {
		return "step"
	}
	return out
}
