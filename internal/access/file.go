package access

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// ForFile compiles the effective access of every RPC of the entity,
// workflow and view services of fd, keyed by full method name
// ("/pkg.Service/Method"). A method's own access replaces its service's.
// When the file declares no access anywhere, every policy is nil (anyone
// may call); when it declares some, a method without any is denied to
// every caller. Access on any other service, or on its methods, is an
// error: consumers and publishers are not called over the network.
func ForFile(fd protoreflect.FileDescriptor) (map[string]*Policy, error) {
	policies := map[string]*Policy{}
	declared := DeclaresAccess(fd)
	var errs []error
	services := fd.Services()
	for i := range services.Len() {
		if err := addService(policies, services.Get(i), declared); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return policies, nil
}

// ForService is ForFile for the RPCs of one service; whether its methods
// without access are denied depends on the rest of its file.
func ForService(sd protoreflect.ServiceDescriptor) (map[string]*Policy, error) {
	policies := map[string]*Policy{}
	if err := addService(policies, sd, DeclaresAccess(sd.ParentFile())); err != nil {
		return nil, err
	}
	return policies, nil
}

// DeclaresAccess reports whether any service or method of fd declares
// access, which makes the file's RPCs without access denied by default.
func DeclaresAccess(fd protoreflect.FileDescriptor) bool {
	services := fd.Services()
	for i := range services.Len() {
		sd := services.Get(i)
		if ServiceAccess(sd) != nil {
			return true
		}
		methods := sd.Methods()
		for j := range methods.Len() {
			if MethodAccess(methods.Get(j)) != nil {
				return true
			}
		}
	}
	return false
}

// ServiceAccess returns the (statefun.v1.access) option of sd, or nil.
func ServiceAccess(sd protoreflect.ServiceDescriptor) *statefunv1.Access {
	opts := sd.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Access) {
		return nil
	}
	a, _ := proto.GetExtension(opts, statefunv1.E_Access).(*statefunv1.Access)
	return a
}

// MethodAccess returns the (statefun.v1.method).access option of md, or nil.
func MethodAccess(md protoreflect.MethodDescriptor) *statefunv1.Access {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Method) {
		return nil
	}
	mo, _ := proto.GetExtension(opts, statefunv1.E_Method).(*statefunv1.MethodOptions)
	return mo.GetAccess()
}

// Callable reports whether sd is a service whose RPCs callers make: an
// entity, a workflow or a view.
func Callable(sd protoreflect.ServiceDescriptor) bool {
	opts := sd.Options()
	if opts == nil {
		return false
	}
	return proto.HasExtension(opts, statefunv1.E_Entity) ||
		proto.HasExtension(opts, statefunv1.E_Workflow) ||
		proto.HasExtension(opts, statefunv1.E_View)
}

// FullMethodName is the key of md in ForFile's map: "/pkg.Service/Method".
func FullMethodName(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

func addService(policies map[string]*Policy, sd protoreflect.ServiceDescriptor, declared bool) error {
	serviceAccess := ServiceAccess(sd)
	methods := sd.Methods()
	if !Callable(sd) {
		if serviceAccess != nil {
			return fmt.Errorf("service %s declares access, but it is not an entity, a workflow or a view, whose RPCs callers make; remove the option", sd.FullName())
		}
		for j := range methods.Len() {
			if MethodAccess(methods.Get(j)) != nil {
				return fmt.Errorf("method %s declares access, but its service is not an entity, a workflow or a view, whose RPCs callers make; remove the option", methods.Get(j).FullName())
			}
		}
		return nil
	}
	var errs []error
	for j := range methods.Len() {
		md := methods.Get(j)
		name := FullMethodName(md)
		a := MethodAccess(md)
		if a == nil {
			a = serviceAccess
		}
		switch {
		case a != nil:
			p, err := Compile(a, md.Input())
			if err != nil {
				errs = append(errs, fmt.Errorf("access of %s: %w", name, err))
				continue
			}
			p.method = name
			policies[name] = p
		case declared:
			p := &Policy{method: name, denyByDefault: true}
			p.description = p.describe()
			policies[name] = p
		default:
			policies[name] = nil
		}
	}
	return errors.Join(errs...)
}
