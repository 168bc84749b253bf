package statefun

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/runtime/internal/console"
)

// RegisterAdmin registers the admin API, statefun.v1.AdminService, on s:
// the console's reads (entity types, an entity's state at any version,
// its history a page at a time, consumers and their lag) for scripts.
// Register it on a server that vanguard transcodes and the routes of
// admin.proto serve it as HTTP/JSON too:
//
//	GET /v1/admin/entity-types
//	GET /v1/admin/entity-types/{entity_type}/entity?id=c1&seq=3
//	GET /v1/admin/entity-types/{entity_type}/entity?key_values=BA117&key_values=12&key_values=C
//	GET /v1/admin/entity-types/{entity_type}/events?id=c1&after_seq=50&page_size=50
//	GET /v1/admin/consumers
//
// Every method only reads, but what it reads is every entity's state:
// register it where only operators reach (the admin listener).
func (r *Runtime) RegisterAdmin(s grpc.ServiceRegistrar) {
	statefunv1.RegisterAdminServiceServer(s, r.adminService())
}

// adminService serves the admin API from the console's Source.
func (r *Runtime) adminService() statefunv1.AdminServiceServer {
	return &adminService{src: r.consoleSource()}
}

type adminService struct {
	statefunv1.UnimplementedAdminServiceServer
	src console.Source
}

func (a *adminService) ListEntityTypes(ctx context.Context, _ *statefunv1.ListEntityTypesRequest) (*statefunv1.ListEntityTypesResponse, error) {
	types, err := a.src.EntityTypes(ctx)
	if err != nil {
		return nil, adminError(err)
	}
	res := &statefunv1.ListEntityTypesResponse{}
	for _, t := range types {
		res.EntityTypes = append(res.EntityTypes, &statefunv1.EntityType{
			EntityType: t.Type, Kind: t.Kind, Service: t.Service, KeyFields: t.KeyFields,
			Cached: t.Cached, Hits: t.Hits, Loads: t.Loads, Evictions: t.Evictions,
		})
	}
	return res, nil
}

func (a *adminService) GetEntity(ctx context.Context, req *statefunv1.GetEntityRequest) (*statefunv1.GetEntityResponse, error) {
	id, err := a.entityID(req.GetEntityType(), req.GetId(), req.GetKeyValues())
	if err != nil {
		return nil, adminError(err)
	}
	e, err := a.src.Entity(ctx, req.GetEntityType(), id, req.GetSeq())
	if err != nil {
		return nil, adminError(err)
	}
	return &statefunv1.GetEntityResponse{
		EntityType: e.Type, Id: e.ID, Seq: e.Seq, Latest: e.Latest, StateJson: e.StateJSON, SnapshotSeq: e.SnapshotSeq,
	}, nil
}

func (a *adminService) ListEvents(ctx context.Context, req *statefunv1.ListEventsRequest) (*statefunv1.ListEventsResponse, error) {
	id, err := a.entityID(req.GetEntityType(), req.GetId(), req.GetKeyValues())
	if err != nil {
		return nil, adminError(err)
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Errorf(codes.InvalidArgument, "page_size: %d is negative; give 0 for %d events or up to %d", size, defaultEventsPage, maxEventsPage)
	case size == 0:
		size = defaultEventsPage
	}
	size = min(size, maxEventsPage)
	// One more than the page tells whether another page follows.
	events, err := a.src.Events(ctx, req.GetEntityType(), id, req.GetAfterSeq(), size+1)
	if err != nil {
		return nil, adminError(err)
	}
	res := &statefunv1.ListEventsResponse{}
	if len(events) > size {
		events = events[:size]
		res.NextAfterSeq = events[size-1].Seq
	}
	for _, e := range events {
		ev := &statefunv1.Event{Seq: e.Seq, EventType: e.Type, PayloadJson: e.PayloadJSON}
		if !e.StoredAt.IsZero() {
			ev.StoredAt = timestamppb.New(e.StoredAt)
		}
		res.Events = append(res.Events, ev)
	}
	return res, nil
}

func (a *adminService) ListConsumers(ctx context.Context, _ *statefunv1.ListConsumersRequest) (*statefunv1.ListConsumersResponse, error) {
	consumers, err := a.src.Consumers(ctx)
	if err != nil {
		return nil, adminError(err)
	}
	res := &statefunv1.ListConsumersResponse{}
	for _, c := range consumers {
		pc := &statefunv1.Consumer{
			Name: c.Name, EntityType: c.EntityType, Position: c.Position, LagEvents: c.LagEvents,
			Retrying: int32(min(c.Retrying, 1<<31-1)), LastError: c.LastError, //nolint:gosec // bounded above
		}
		if c.LagTime > 0 {
			pc.LagTime = durationpb.New(c.LagTime)
		}
		res.Consumers = append(res.Consumers, pc)
	}
	return res, nil
}

// entityID takes the ID as given, or forms it from the key's values.
func (a *adminService) entityID(typ, id string, keyValues []string) (string, error) {
	switch {
	case id != "" && len(keyValues) > 0:
		return "", badInput("id", "both id and key_values are set; give one of them")
	case id != "":
		return id, nil
	case len(keyValues) == 0:
		return "", badInput("id", "neither id nor key_values is set; give the entity ID or the values of its key fields")
	}
	return a.src.EntityID(typ, keyValues)
}

// adminError maps the Source's errors to status codes: NOT_FOUND for an
// entity without history, INVALID_ARGUMENT for a request to fix (the
// message names the field), the context's code when the caller gave up,
// UNAVAILABLE for a store that failed.
func adminError(err error) error {
	var input *inputError
	switch {
	case errors.As(err, &input):
		return status.Error(codes.InvalidArgument, input.Error())
	case errors.Is(err, console.ErrNotFound):
		return status.Errorf(codes.NotFound, "%v; check the entity type and ID", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "%v; retry", err)
}
