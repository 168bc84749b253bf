package breaking

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// view is a service with the (statefun.v1.view) option, read the way the
// generator reads it: its rows are stored as protobuf binary under its
// name and version. Each version is a table of its own, built from the
// source's history, so a new name or version has nothing stored to
// misread.
type view struct {
	service protoreflect.ServiceDescriptor
	name    string
	version uint32
	row     protoreflect.MessageDescriptor
}

// readViews returns the views declared in files, by service name.
func readViews(files *protoregistry.Files) []*view {
	var views []*view
	files.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			if v := readView(files, services.Get(i)); v != nil {
				views = append(views, v)
			}
		}
		return true
	})
	sort.Slice(views, func(i, j int) bool { return views[i].service.FullName() < views[j].service.FullName() })
	return views
}

// readView returns the view svc declares, or nil: also for a service that
// is an entity, a workflow or a consumer too, which the generator refuses.
func readView(files *protoregistry.Files, svc protoreflect.ServiceDescriptor) *view {
	opts := svc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_View) || proto.HasExtension(opts, statefunv1.E_Entity) ||
		proto.HasExtension(opts, statefunv1.E_Workflow) || proto.HasExtension(opts, statefunv1.E_Consumer) {
		return nil
	}
	vo := proto.GetExtension(opts, statefunv1.E_View).(*statefunv1.ViewOptions)
	v := &view{service: svc, name: vo.GetName(), version: max(vo.GetVersion(), 1), row: resolveMessage(files, svc, vo.GetRow())}
	return v
}

// view compares the rows of a view kept under the same name and version:
// the server reads the rows stored by the old version as the new row
// message. Each finding also offers the other way out: a raised version
// is rebuilt from the source's events, and then the row may change at
// will.
func (c *checker) view(old, v *view) {
	if old.name != v.name || old.version != v.version || old.row == nil || v.row == nil {
		return
	}
	n := len(c.findings)
	c.messages(old.row, v.row, fmt.Sprintf("each stored row of view %q (version %d)", old.name, old.version))
	for i := n; i < len(c.findings); i++ {
		c.findings[i].Fix += fmt.Sprintf("; or raise the version of view %s to %d, which rebuilds its rows from the source's events",
			v.service.FullName(), v.version+1)
	}
}
