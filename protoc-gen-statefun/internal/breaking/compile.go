package breaking

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// The statefun options, so that a user's protos may import
	// statefun/v1/annotations.proto without vendoring it, and so that
	// proto.GetExtension decodes them.
	_ "github.com/statefun-go/statefun/gen/statefun/v1"
	// google/api/annotations.proto, for the same reasons: protos with
	// REST routes import it.
	_ "google.golang.org/genproto/googleapis/api/annotations"
)

// compileDir compiles every .proto file under dir, with dir as the import
// path.
func compileDir(ctx context.Context, dir string) (*protoregistry.Files, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .proto files under %s", dir)
	}
	return compile(ctx, &protocompile.SourceResolver{ImportPaths: []string{dir}}, files)
}

// compile compiles files found through sources. Imports not found there
// come from protocompile's standard imports (the well-known types) and then
// from the descriptors linked into this binary, statefun's options among
// them.
func compile(ctx context.Context, sources protocompile.Resolver, files []string) (*protoregistry.Files, error) {
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{sources, linkedFiles}),
		// Extra option locations, as buf records them, so that findings point
		// at the field inside an option value (an entity's type, its events).
		SourceInfoMode: protocompile.SourceInfoStandard | protocompile.SourceInfoExtraOptionLocations,
	}
	compiled, err := compiler.Compile(ctx, files...)
	if err != nil {
		return nil, err
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range compiled {
		add(fd)
	}
	wire, err := proto.Marshal(set)
	if err != nil {
		return nil, err
	}
	return registryFromWire(wire)
}

var linkedFiles = protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
	fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
	if err != nil {
		return protocompile.SearchResult{}, err
	}
	return protocompile.SearchResult{Desc: fd}, nil
})

// registryFromWire builds a registry from a binary FileDescriptorSet or buf
// image (whose files are FileDescriptorProtos with extra fields). Decoding
// from the wire, rather than using the compiler's descriptors, makes the
// statefun options the Go types that proto.GetExtension returns. Imports
// missing from the set are taken from the descriptors linked into this
// binary.
func registryFromWire(wire []byte) (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(wire, set); err != nil {
		return nil, fmt.Errorf("not a FileDescriptorSet or buf image: %w", err)
	}
	have := map[string]bool{}
	for _, f := range set.GetFile() {
		have[f.GetName()] = true
	}
	var missing []string
	for _, f := range set.GetFile() {
		for _, dep := range f.GetDependency() {
			if !have[dep] {
				have[dep] = true
				missing = append(missing, dep)
			}
		}
	}
	for len(missing) > 0 {
		dep := missing[0]
		missing = missing[1:]
		fd, err := protoregistry.GlobalFiles.FindFileByPath(dep)
		if err != nil {
			continue // protodesc.NewFiles names it
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			if p := imports.Get(i).Path(); !have[p] {
				have[p] = true
				missing = append(missing, p)
			}
		}
	}
	return protodesc.NewFiles(set)
}

// readImage reads a binary FileDescriptorSet or buf image from path.
func readImage(path string) (*protoregistry.Files, error) {
	wire, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	files, err := registryFromWire(wire)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return files, nil
}
