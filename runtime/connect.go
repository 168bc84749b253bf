package statefun

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// rpcHandler is the RPC side of the HTTP port. The entities' methods are
// served natively by connect-go (connecthandler.go); vanguard's transcoder
// serves the rest: REST routes (google.api.http), the gRPC server's own
// services (health, reflection) and unknown paths, with the fixes that make
// its Connect unary calls behave as a connect-go server's do.
type rpcHandler struct {
	native     map[string]http.Handler // the entities' methods by "/package.Service/Method"
	transcoder http.Handler
	methods    map[string]bool // "/package.Service/Method" of every method the gRPC server has
	services   string          // the entity services and their methods, for error messages
}

func newRPCHandler(grpcServer *grpc.Server, native map[string]http.Handler) *rpcHandler {
	h := &rpcHandler{native: native, methods: map[string]bool{}}
	info := grpcServer.GetServiceInfo()
	var services []string
	for name, svc := range info {
		var methods []string
		for _, m := range svc.Methods {
			h.methods["/"+name+"/"+m.Name] = true
			methods = append(methods, m.Name)
		}
		// In the order of the proto, where it is known.
		if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name)); err == nil {
			if sd, ok := d.(protoreflect.ServiceDescriptor); ok && sd.Methods().Len() == len(methods) {
				for i := range methods {
					methods[i] = string(sd.Methods().Get(i).Name())
				}
			}
		}
		// Health and reflection are served too, but are not what a
		// caller who mistyped a method is looking for.
		if !strings.HasPrefix(name, "grpc.") {
			services = append(services, fmt.Sprintf("%s (methods: %s)", name, strings.Join(methods, ", ")))
		}
	}
	slices.Sort(services)
	h.services = strings.Join(services, ", ")
	return h
}

func (h *rpcHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if native, ok := h.native[r.URL.Path]; ok {
		native.ServeHTTP(w, r)
		return
	}
	if !isConnectUnaryPost(r) {
		h.transcoder.ServeHTTP(w, r)
		return
	}
	// The Connect protocol makes Connect-Protocol-Version optional, and
	// connect-go accepts unary calls without it unless a handler asks for
	// it (connect.WithRequireConnectProtocolHeader). Vanguard takes a
	// request without it for REST, and with no REST routes answers 404, so
	// a plain `curl -H 'Content-Type: application/json'` never reached the
	// method. Only POSTs of a Connect unary content type to a path shaped
	// like /package.Service/Method get here, so no REST route is taken away.
	if r.Header.Get("Connect-Protocol-Version") == "" {
		r.Header.Set("Connect-Protocol-Version", "1")
	}
	if h.methods[r.URL.Path] {
		// Vanguard passes an empty body on as no request message at all,
		// which the gRPC server refuses as INTERNAL ("cardinality
		// violation"). connect-go answers invalid_argument for an empty
		// JSON body ("zero-length payload is not a valid JSON object"), and
		// so does this. For binary protobuf, an empty body is an empty
		// message to connect-go; vanguard cannot pass that on, so it is
		// invalid_argument here too.
		body, empty, err := peekEmpty(r.Body)
		if err != nil {
			writeConnectError(w, http.StatusBadRequest, connect.CodeInvalidArgument, fmt.Sprintf("read the request body: %v", err))
			return
		}
		if empty {
			msg := "request body is empty; send a JSON object, e.g. {}"
			if mediaType(r) == "application/proto" {
				msg = "request body is empty; send the request message"
			}
			writeConnectError(w, http.StatusBadRequest, connect.CodeInvalidArgument, msg)
			return
		}
		r.Body = body
	}
	h.transcoder.ServeHTTP(w, r)
}

// serveUnknown answers a request for a path the gRPC server has no method
// for: an RPC-shaped path gets the protocol's error with code
// unimplemented, naming the services there are; any other path a plain 404
// that says what this port serves.
func (h *rpcHandler) serveUnknown(w http.ResponseWriter, r *http.Request) {
	if !isRPCPath(r.URL.Path) {
		http.Error(w, "404 page not found; this port serves POST /<package>.<Service>/<Method> (Connect, gRPC-Web), /metrics and /healthz", http.StatusNotFound)
		return
	}
	msg := fmt.Sprintf("no method %s; the services are %s", r.URL.Path, h.services)
	if isConnectUnaryPost(r) {
		// 404, not the 501 Connect maps unimplemented to: an unknown
		// procedure is a 404 from a connect-go server (its mux), and
		// Connect clients read the code from the body either way.
		writeConnectError(w, http.StatusNotFound, connect.CodeUnimplemented, msg)
		return
	}
	if ew := connect.NewErrorWriter(); ew.IsSupported(r) {
		// gRPC, gRPC-Web and Connect streaming: their own error framing.
		_ = ew.Write(w, r, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("%s", msg)))
		return
	}
	http.Error(w, msg, http.StatusNotFound)
}

// isConnectUnaryPost reports whether r is shaped like a Connect unary call:
// a POST of JSON or binary protobuf to /package.Service/Method.
func isConnectUnaryPost(r *http.Request) bool {
	if r.Method != http.MethodPost || !isRPCPath(r.URL.Path) {
		return false
	}
	switch mediaType(r) {
	case "application/json", "application/proto":
		return true
	}
	return false
}

func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// isRPCPath reports whether path has the shape /package.Service/Method.
func isRPCPath(path string) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && strings.HasPrefix(path, "/") && strings.Contains(service, ".") && method != "" && !strings.Contains(method, "/")
}

// peekEmpty reports whether body has no bytes, and returns a reader that
// still yields all of them.
func peekEmpty(body io.ReadCloser) (io.ReadCloser, bool, error) {
	var first [1]byte
	n, err := io.ReadFull(body, first[:])
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return body, true, nil
	case n == 0:
		return body, false, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(string(first[:n])), body), body}, false, nil
}

// writeConnectError writes a Connect unary error: a JSON object with the
// code and message.
func writeConnectError(w http.ResponseWriter, status int, code connect.Code, msg string) {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code.String(), msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// decodeJSON decodes a request in protobuf's canonical JSON. Vanguard
// and connect-go drop unknown fields, so a typo such as "qty" arrived as a
// request without a quantity and failed with a misleading rule violation;
// the entities' protos are the server's own, so a field it does not know
// is a mistake in the request, and is refused by name.
func decodeJSON(data []byte, msg proto.Message) error {
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, msg); err != nil {
		return jsonRequestError(data, msg, err)
	}
	return nil
}

// jsonRequestError says what is wrong with a JSON request that did not
// decode into msg: the field msg (or a message in it) does not have, else
// the decoder's err.
func jsonRequestError(data []byte, msg proto.Message, err error) error {
	if md, name := unknownJSONField(data, msg.ProtoReflect().Descriptor()); md != nil {
		return fmt.Errorf("unknown field %q in %s; the fields are: %s", name, md.FullName(), fieldNames(md))
	}
	return fmt.Errorf("request is not valid JSON for %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
}

// unknownJSONField finds the first field of a JSON request that md (or the
// message of one of its fields, at any depth) does not have, and returns
// that message and the field's name; nil when there is none. Well-known
// types, whose JSON is not an object of fields, are not looked into.
func unknownJSONField(data []byte, md protoreflect.MessageDescriptor) (protoreflect.MessageDescriptor, string) {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil, ""
	}
	var object map[string]json.RawMessage
	if json.Unmarshal(data, &object) != nil {
		return nil, ""
	}
	names := slices.Sorted(maps.Keys(object))
	for _, name := range names {
		if strings.HasPrefix(name, "[") {
			continue // an extension
		}
		fields := md.Fields()
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		if fd == nil {
			return md, name
		}
		var values []json.RawMessage
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil:
			var m map[string]json.RawMessage
			_ = json.Unmarshal(object[name], &m)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				values = append(values, m[k])
			}
			fd = fd.MapValue()
		case fd.IsList() && fd.Message() != nil:
			_ = json.Unmarshal(object[name], &values)
		case fd.Message() != nil:
			values = []json.RawMessage{object[name]}
		}
		for _, v := range values {
			if md, name := unknownJSONField(v, fd.Message()); md != nil {
				return md, name
			}
		}
	}
	return nil, ""
}

// fieldNames lists md's fields for an error message: the proto name, and
// the JSON name too where it differs (both are accepted).
func fieldNames(md protoreflect.MessageDescriptor) string {
	var names []string
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		name := string(fd.Name())
		if fd.JSONName() != name {
			name += " (" + fd.JSONName() + ")"
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}
