package generator

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/internal/access"
)

// readAccess checks the access options of the files to generate with
// internal/access, the package the runtime enforces them with, and notes
// who may call each RPC for its doc comments. It warns about entities,
// workflows and views anyone may call because their file declares no
// access, and about RPCs denied to everyone because their file declares
// access elsewhere.
//
// Access on a consumer's or a plain service's methods is reported where
// those methods' options are read (readConsumer, readEntity); a
// publisher's methods are refused whatever their options.
func (m *model) readAccess(plugin *protogen.Plugin) {
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		for _, svc := range f.Services {
			m.checkServiceAccess(svc)
		}
		if m.diags.in(f.Desc.Path()) {
			continue // the policies below could fail on the same mistakes
		}
		policies, err := access.ForFile(f.Desc)
		if err != nil {
			// Not reached when the checks above pass; reported all the same.
			m.diags.add(position{file: f.Desc.Path()}, "%v", err)
			continue
		}
		if access.DeclaresAccess(f.Desc) {
			m.noteAccess(f, policies)
		}
		m.warnAboutAccess(f)
	}
}

// checkServiceAccess checks the access of svc and of its methods.
func (m *model) checkServiceAccess(svc *protogen.Service) {
	name := svc.Desc.Name()
	serviceAccess := access.ServiceAccess(svc.Desc)
	servicePos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, accessExtension}, path...)...)
	}
	if !access.Callable(svc.Desc) {
		if serviceAccess == nil {
			return
		}
		switch {
		case consumerOptions(svc) != nil:
			m.diags.add(servicePos(),
				"service %s is a consumer, which no caller calls: the runtime calls it with its source's events; remove option (statefun.v1.access)", name)
		case publisherOptions(svc) != nil:
			m.diags.add(servicePos(),
				"service %s is a publisher, which has no RPCs to call: the runtime runs it; remove option (statefun.v1.access)", name)
		default:
			m.diags.add(servicePos(),
				"service %s declares (statefun.v1.access), but it is not an entity, a workflow or a view, the services statefun serves; remove the option, or make the service one of them with (statefun.v1.entity), (statefun.v1.workflow) or (statefun.v1.view)", name)
		}
		return
	}

	// The service's access applies to every method without its own, and
	// its field bindings must exist in each of their requests.
	var requests []protoreflect.MessageDescriptor
	for _, meth := range svc.Methods {
		methodAccess := access.MethodAccess(meth.Desc)
		if methodAccess == nil {
			requests = append(requests, meth.Input.Desc)
			continue
		}
		at := func(path ...int32) position {
			return positionOf(meth.Desc, append([]int32{methodOptionsField, statefunExtension, methodAccessField}, path...)...)
		}
		owner := fmt.Sprintf("%s.%s", name, meth.Desc.Name())
		m.compileAccess(methodAccess, meth.Input.Desc, owner, at, map[string]bool{})
		m.warnEmptyAllow(methodAccess, at(), owner)
	}
	if serviceAccess == nil {
		return
	}
	if len(requests) == 0 {
		// Every method replaces it: only its own shape can be checked.
		requests = append(requests, nil)
	}
	seen := map[string]bool{}
	for _, req := range requests {
		m.compileAccess(serviceAccess, req, "service "+string(name), servicePos, seen)
	}
	m.warnEmptyAllow(serviceAccess, servicePos(), string(name))
}

// compileAccess reports every mistake of the access of owner, compiled
// against request, at the part of the option at names; each once across
// the calls that share seen (a service's access is compiled against the
// request of each method it applies to).
func (m *model) compileAccess(a *statefunv1.Access, request protoreflect.MessageDescriptor, owner string, at func(path ...int32) position, seen map[string]bool) {
	_, err := access.Compile(a, request)
	for _, e := range ruleErrors(err) {
		var re *access.RuleError
		if !errors.As(e, &re) {
			m.diags.add(at(), "access of %s: %v", owner, e)
			continue
		}
		pos := at(re.Path...)
		key := pos.String() + re.Error()
		if seen[key] {
			continue
		}
		seen[key] = true
		m.diags.add(pos, "access of %s: %s", owner, re.Error())
	}
}

// ruleErrors splits the errors access.Compile joined.
func ruleErrors(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// warnEmptyAllow warns about an access that allows no caller: legal,
// but more likely a rule left out than a wish.
func (m *model) warnEmptyAllow(a *statefunv1.Access, pos position, owner string) {
	if len(a.GetAllow()) == 0 {
		m.warnings.add(pos,
			"the access of %s allows no caller (its allow list is empty), so every call is refused; add allow rules, or remove the RPCs no one may call", owner)
	}
}

// noteAccess records who may call each RPC of f, for the doc comments of
// the generated handler and client methods.
func (m *model) noteAccess(f *protogen.File, policies map[string]*access.Policy) {
	describe := func(meth *protogen.Method) string {
		return policies[access.FullMethodName(meth.Desc)].Describe()
	}
	for _, e := range m.entities[f] {
		for _, mm := range e.methods {
			mm.access = describe(mm.method)
		}
	}
	for _, w := range m.workflows[f] {
		for _, mm := range w.methods {
			mm.access = describe(mm.method)
		}
	}
	for _, v := range m.views[f] {
		for _, q := range v.queries {
			q.access = describe(q.method)
		}
	}
}

// warnAboutAccess warns, in a file without access, about every service
// anyone may call, and in a file with access, about every RPC it denies to
// everyone by default.
func (m *model) warnAboutAccess(f *protogen.File) {
	declared := access.DeclaresAccess(f.Desc)
	for _, svc := range f.Services {
		if !access.Callable(svc.Desc) {
			continue
		}
		if !declared {
			m.warnings.add(positionOf(svc.Desc),
				"anyone who reaches the server can call %s; declare who may with option (statefun.v1.access) (allow: { anyone: true } keeps it open and says so)", svc.Desc.Name())
			continue
		}
		if access.ServiceAccess(svc.Desc) != nil {
			continue
		}
		for _, meth := range svc.Methods {
			if access.MethodAccess(meth.Desc) == nil {
				m.warnings.add(positionOf(meth.Desc),
					"%s.%s has no access rule and is denied to every caller (the file declares access elsewhere); add option (statefun.v1.method).access to it, or (statefun.v1.access) to service %s",
					svc.Desc.Name(), meth.Desc.Name(), svc.Desc.Name())
			}
		}
	}
}

// accessDoc appends who may call an RPC (access, "" when its file declares
// no access) to its doc comment, wrapped at width.
func accessDoc(doc, access string, width int) string {
	if access == "" {
		return doc
	}
	return doc + "\n\n" + wrap("Access: "+access+".", width)
}
