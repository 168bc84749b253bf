package breaking

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// workflow is a service with the (statefun.v1.workflow) option, read the
// way the generator reads it: what its stored histories name (its type and
// its steps) and its state, stored as protobuf binary with every outcome.
type workflow struct {
	service protoreflect.ServiceDescriptor
	typ     string
	state   protoreflect.MessageDescriptor
	steps   []string
}

// readWorkflows returns the workflows declared in files, by service name.
func readWorkflows(files *protoregistry.Files) []*workflow {
	var workflows []*workflow
	files.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			if w := readWorkflow(files, services.Get(i)); w != nil {
				workflows = append(workflows, w)
			}
		}
		return true
	})
	sort.Slice(workflows, func(i, j int) bool { return workflows[i].service.FullName() < workflows[j].service.FullName() })
	return workflows
}

// readWorkflow returns the workflow svc declares, or nil: also for a
// service that is an entity or a consumer too, which the generator refuses.
func readWorkflow(files *protoregistry.Files, svc protoreflect.ServiceDescriptor) *workflow {
	opts := svc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Workflow) ||
		proto.HasExtension(opts, statefunv1.E_Entity) || proto.HasExtension(opts, statefunv1.E_Consumer) || proto.HasExtension(opts, statefunv1.E_View) {
		return nil
	}
	wo := proto.GetExtension(opts, statefunv1.E_Workflow).(*statefunv1.WorkflowOptions)
	w := &workflow{service: svc, typ: wo.GetType(), state: resolveMessage(files, svc, wo.GetState())}
	for _, s := range wo.GetSteps() {
		if s.GetName() != "" {
			w.steps = append(w.steps, s.GetName())
		}
	}
	return w
}

func (w *workflow) optionPosition(suffix ...int32) Position {
	return positionOf(w.service, append([]int32{serviceOptionsField, workflowExtension}, suffix...)...)
}

func (c *checker) workflowRemoved(old *workflow) {
	fix := fmt.Sprintf("keep service %s with option (statefun.v1.workflow) and type: %q (the service may be renamed or moved if it keeps the type)", old.service.FullName(), old.typ)
	pos := Position{File: old.service.ParentFile().Path()}
	if svc, err := c.newFiles.FindDescriptorByName(old.service.FullName()); err == nil {
		pos = positionOf(svc)
	} else if file, err := c.newFiles.FindFileByPath(old.service.ParentFile().Path()); err == nil {
		pos = filePosition(file)
	}
	c.add(pos, fix, "workflow %q (service %s, %s in the old version) was removed, but its stored histories stay in the store and name it",
		old.typ, old.service.FullName(), positionOf(old.service))
}

func (c *checker) workflow(old, w *workflow) {
	if old.typ != w.typ {
		fix := fmt.Sprintf("set type: %q again; a new type starts with no workflows", old.typ)
		if w.typ == "" {
			c.add(w.optionPosition(workflowTypeField), fix, "the type %q of workflow %s was removed, but its stored histories are kept under that type",
				old.typ, w.service.FullName())
		} else {
			c.add(w.optionPosition(workflowTypeField), fix, "the type of workflow %s changed from %q to %q, but its stored histories are kept under %q",
				w.service.FullName(), old.typ, w.typ, old.typ)
		}
	}
	if old.state != nil && w.state != nil {
		c.messages(old.state, w.state, fmt.Sprintf("the state of workflow %q", old.typ))
	}
	steps := map[string]bool{}
	for _, s := range w.steps {
		steps[s] = true
	}
	for _, s := range old.steps {
		if steps[s] {
			continue
		}
		c.add(w.optionPosition(workflowStepsField, 0),
			fmt.Sprintf("keep step %q, its method ending with a GoTo to the step that replaces it, until no workflow can be at it", s),
			"step %q was removed from workflow %q, but stored workflows may be at it, and one at a step that is gone fails when the step is due", s, old.typ)
	}
}
