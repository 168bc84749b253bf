package generator

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// TestTestKitMethodNames checks that an RPC named like one of the testkit's
// own methods gets a testkit method of its own instead of a clash that would
// not compile.
func TestTestKitMethodNames(t *testing.T) {
	t.Parallel()
	src := `syntax = "proto3";
package acme.v1;
import "statefun/v1/annotations.proto";
option go_package = "github.com/statefun-go/statefun/acme/v1;acmev1";
service Ledger {
  option (statefun.v1.entity) = { type: "ledger" state: "Book" event_sourced: { events: ["Posted"] } };
  rpc Post(Req) returns (Book);
  rpc Given(Req) returns (Book);
  rpc GivenCommand(Req) returns (Book);
  rpc State(Req) returns (Book) { option (statefun.v1.method).read_only = true; }
}
message Req { string id = 1 [(statefun.v1.field).key = true]; }
message Book {}
message Posted { option (statefun.v1.event) = {}; }`
	res := run(t, compileRequest(t, map[string]string{"ledger.proto": src}, "ledger.proto"))
	if res.Error != nil {
		t.Fatalf("generator error: %s", res.GetError())
	}
	if len(res.File) != 2 || !strings.HasSuffix(res.File[1].GetName(), "ledger_testkit.statefun.go") {
		t.Fatalf("generated %d files, want 2: the service's and the testkit's (ledger_testkit.statefun.go)", len(res.File))
	}
	code := res.File[1].GetContent()
	if _, err := parser.ParseFile(token.NewFileSet(), res.File[1].GetName(), code, 0); err != nil {
		t.Fatalf("generated code does not parse: %v", err)
	}
	for _, want := range []string{
		"func (k *LedgerTestKit) Post(req *Req) *LedgerTestResult[*Book]",
		"func (k *LedgerTestKit) GivenCommand2(req *Req) *LedgerTestResult[*Book]",
		"func (k *LedgerTestKit) GivenCommand(req *Req) *LedgerTestResult[*Book]",
		"func (k *LedgerTestKit) StateRead(req *Req) *LedgerTestResult[*Book]",
		"func (k *LedgerTestKit) Given(events ...LedgerEvent)",
		"func (k *LedgerTestKit) State() *Book",
	} {
		if strings.Count(code, want) != 1 {
			t.Errorf("generated code has %d of %q, want 1", strings.Count(code, want), want)
		}
	}
}

// TestWorkflowTestKitMethodNames: a workflow RPC named like one of the
// workflow testkit's own methods gets a testkit method of its own.
func TestWorkflowTestKitMethodNames(t *testing.T) {
	t.Parallel()
	src := `syntax = "proto3";
package acme.v1;
import "statefun/v1/annotations.proto";
option go_package = "github.com/statefun-go/statefun/acme/v1;acmev1";
service Job {
  option (statefun.v1.workflow) = { type: "job" state: "State" steps: {name: "work"} };
  rpc Run(Req) returns (State) { option (statefun.v1.method).start = true; }
  rpc RunStep(Req) returns (State);
  rpc RunStepSignal(Req) returns (State);
  rpc Status(Req) returns (State) { option (statefun.v1.method).read_only = true; }
}
message Req { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`
	res := run(t, compileRequest(t, map[string]string{"job.proto": src}, "job.proto"))
	if res.Error != nil {
		t.Fatalf("generator error: %s", res.GetError())
	}
	if len(res.File) != 2 || !strings.HasSuffix(res.File[1].GetName(), "job_testkit.statefun.go") {
		t.Fatalf("generated %d files, want 2: the service's and the testkit's (job_testkit.statefun.go)", len(res.File))
	}
	code := res.File[1].GetContent()
	if _, err := parser.ParseFile(token.NewFileSet(), res.File[1].GetName(), code, 0); err != nil {
		t.Fatalf("generated code does not parse: %v", err)
	}
	for _, want := range []string{
		"func (k *JobTestKit) RunStart(req *Req) *statefun.WorkflowTestResult[*State]",
		"func (k *JobTestKit) RunStepSignal2(req *Req) *statefun.WorkflowTestResult[*State]",
		"func (k *JobTestKit) RunStepSignal(req *Req) *statefun.WorkflowTestResult[*State]",
		"func (k *JobTestKit) StatusRead(req *Req) *statefun.WorkflowTestResult[*State]",
		"func (k *JobTestKit) Run(maxSteps int) *statefunv1.WorkflowStatus",
		"func (k *JobTestKit) RunStep() *statefun.StepTestResult",
		"func (k *JobTestKit) Status() *statefunv1.WorkflowStatus",
	} {
		if strings.Count(code, want) != 1 {
			t.Errorf("generated code has %d of %q, want 1", strings.Count(code, want), want)
		}
	}
}
