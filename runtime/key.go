package statefun

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// JoinKey forms the entity ID of a composite key from its parts, in order.
// Each part is escaped ('%' as "%25", '/' as "%2F") and the parts are joined
// with '/', so distinct keys always give distinct IDs: ("a/b", "c") and
// ("a", "b/c") become "a%2Fb/c" and "a/b%2Fc". A single-field key is used
// as it is, without escaping.
func JoinKey(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('/')
		}
		for j := 0; j < len(p); j++ {
			switch c := p[j]; c {
			case '%':
				b.WriteString("%25")
			case '/':
				b.WriteString("%2F")
			default:
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// SplitKey returns the parts of an entity ID made by JoinKey: a consumer
// of an entity with a composite key gets the ID joined. It fails on an ID
// that JoinKey cannot have made.
func SplitKey(id string) ([]string, error) {
	parts := strings.Split(id, "/")
	for i, p := range parts {
		if !strings.Contains(p, "%") {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			if p[j] != '%' {
				b.WriteByte(p[j])
				continue
			}
			switch {
			case strings.HasPrefix(p[j:], "%25"):
				b.WriteByte('%')
			case strings.HasPrefix(p[j:], "%2F"):
				b.WriteByte('/')
			default:
				return nil, fmt.Errorf("entity ID %q is not a composite key: %q at %d is not an escape JoinKey writes", id, p[j:], j)
			}
			j += 2
		}
		parts[i] = b.String()
	}
	return parts, nil
}

// MissingKeyError is the error returned for a request whose entity key field
// is empty (or zero, for an integer key). It carries codes.InvalidArgument and
// names the field, as a path from the request message ("device.serial").
func MissingKeyError(request, field string) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(
		"missing entity key: field %s of %s is empty; set it to the key of the entity to address", field, request))
}
