// Command protoc-gen-statefun generates typed Go for statefun entities,
// workflows, consumers, views and publishers from annotated .proto files: the handler
// interface to implement, the sealed event set or the step values, the
// gRPC service glue, a typed client and a testkit for unit tests of the
// handlers.
//
// To start a project, "protoc-gen-statefun init DIR" writes a new Go module
// with one entity, its buf configuration, a test and a Makefile, pins the
// plugins and buf, and generates its code: the project builds, tests green
// and serves at once. It never overwrites a file that exists.
//
// Install it, or run it pinned through go run, next to protoc-gen-go and
// protoc-gen-go-grpc. With buf, in buf.gen.yaml:
//
//	version: v2
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-go"]
//	    out: gen
//	    opt: paths=source_relative
//	  - local: ["go", "tool", "protoc-gen-go-grpc"]
//	    out: gen
//	    opt: paths=source_relative
//	  - local: ["go", "run", "github.com/statefun-go/statefun/protoc-gen-statefun"]
//	    out: gen
//	    opt: paths=source_relative
//
// With protoc:
//
//	protoc -I . -I path/to/statefun/annotations \
//	  --go_out=gen --go_opt=paths=source_relative \
//	  --go-grpc_out=gen --go-grpc_opt=paths=source_relative \
//	  --statefun_out=gen --statefun_opt=paths=source_relative \
//	  shop/cart/v1/cart.proto
//
// For a file foo.proto that declares entities or workflows, the plugin
// writes foo.statefun.go beside protoc-gen-go's foo.pb.go, and the testkit
// in foo_testkit.statefun.go (same package: a binary that does not call it
// does not link it); consumers, views and publishers get foo.statefun.go
// only. Files without any of them produce nothing.
//
// The options it reads (all from statefun/v1/annotations.proto):
//
//   - service option (statefun.v1.entity): type, state, event_sourced
//     {events, snapshot_every} or key_value {}, passivation_timeout;
//   - message option (statefun.v1.event): type (the stored event name);
//   - field option (statefun.v1.field).key: the entity key, composite
//     (several fields) or nested (on a message field);
//   - service option (statefun.v1.workflow): type, state, steps {name,
//     timeout, retry}, step_timeout, retry {max_attempts, initial_backoff,
//     max_backoff, failover}, passivation_timeout;
//   - service option (statefun.v1.consumer): name, source, start_from;
//   - service option (statefun.v1.view): name, source (an event-sourced
//     or key-value entity), row (its state message, or a message of the
//     view's own), version;
//   - service option (statefun.v1.publisher): name, source, events, to
//     {nats_subject | kafka_topic}, encoding, start_from;
//   - service option (statefun.v1.access) and method option
//     (statefun.v1.method).access: who may call an entity's, a workflow's or
//     a view's RPCs, allow {anyone | token {issuers, audiences, claims
//     {name, equals | pattern}, fields {field, claim}} | service}; a
//     method's replaces its service's, and once a file declares any, its
//     RPCs without one are denied to every caller. Each rule is checked
//     against the method's request (internal/access, which the runtime
//     enforces them with), and the generated handler and client methods
//     say who may call them;
//   - method option (statefun.v1.method): read_only, start (workflows
//     only), subscribe (entities only: from {nats_subject | kafka_topic},
//     group, max_attempts, dead_letter; a request without key fields takes
//     its entity from the message's ce-subject), and query (views only: every RPC of a view has one, checked
//     against the row and request messages when generating; a mistake in a
//     query is reported at its column when the string is one line without
//     escapes, else at the option).
//
// A view's unary RPC returns a message with one repeated field of rows and,
// optionally, string next_page_token (its request then has string
// page_token; int32 page_size is optional); a server-streaming RPC returns
// stream of the row message.
//
// Plugin parameters: the standard protogen ones (paths, module, M) only.
//
// Every mistake in the options is reported as
// "file.proto:line:col: what is wrong; how to fix it", all of them in one
// run, and the plugin exits non-zero.
//
// Warnings go to standard error, which buf and protoc show, as
// "file.proto:line:col: warning: ...", and do not fail the run: an entity,
// workflow or view in a file that declares no access (anyone who reaches
// the server may call it), an RPC denied to everyone because its file
// declares access elsewhere, and an access whose allow list is empty.
//
// The subcommand breaking checks that data already stored stays readable:
// it compares the protos of a directory with an older version of them and
// refuses every change that would make stored events and states unreadable
// or misread, such as a changed entity or event type name, an event removed
// from an entity's events, a changed field number or type, or a field or
// enum value removed without reserving its number (the full list is in the
// README, "Schema safety"):
//
//	go tool protoc-gen-statefun breaking --against-git main proto
//
// The old version comes from a git ref (--against-git, default HEAD), a
// directory (--against) or a buf image or FileDescriptorSet
// (--against-image). Each finding is printed as
// "file.proto:line:col: what is wrong; how to fix it" and the exit status is
// 1; see protoc-gen-statefun breaking --help. It checks stored data only:
// run buf breaking for your API's clients as well.
//
// The Go names it declares come from the service name without a "Service"
// suffix. For an entity Cart (service Cart or CartService): CartEntityType,
// CartEvent, CartHandler, CartEventHandler, CartContext, CartReadContext,
// NewCart, CartEntityClient, NewCartEntityClient, Cart<Method>Call,
// CartTestKit, NewCartTestKit and CartTestResult, and unexported helpers
// (cartServer, cart<Method>Key, ...); for a workflow Transfer:
// TransferWorkflowType, TransferStep and a TransferStep<Step> value per step
// (TransferStepAwaitApproval for step await_approval), TransferHandler (a
// method per RPC and per step, named by the step's camel case),
// TransferContext, TransferReadContext, TransferStepContext, NewTransfer,
// TransferWorkflowClient, NewTransferWorkflowClient, Transfer<Method>Call,
// TransferTestKit and NewTransferTestKit, and unexported helpers
// (transferWorkflowConfig, transferServer, transfer<Method>Key); for a
// consumer Audit: AuditConsumerName, AuditHandler, AuditContext and
// NewAudit; for a view OrdersByCustomer: OrdersByCustomerViewName,
// NewOrdersByCustomer (taking the source entity's <Entity>EventHandler when
// the rows are its states, else an OrdersByCustomerUpdater with an
// On<Event> method per source event), OrdersByCustomerViewClient (with an
// iterator over a streaming query's rows, and <Method>All over every page
// of a paged one), NewOrdersByCustomerViewClient and the unexported
// ordersByCustomerServer; for a publisher OrderPlacements:
// OrderPlacementsPublisherName and NewOrderPlacements. A name that is also declared in the same Go package, by
// protoc-gen-go (a message, a nested message as Outer_Inner, an enum or
// enum value, a oneof wrapper), by protoc-gen-go-grpc (CartClient,
// UnimplementedCartServer, ...) or for another entity, workflow or
// consumer, is reported like any other mistake, since the generated code
// would not compile:
//
//	cart.proto:5:1: generated Go name LedgerEvent (the event interface of entity LedgerService) clashes with message acme.v1.LedgerEvent (cart.proto:12:1); rename message LedgerEvent or service LedgerService
//
// So is an RPC that would clash with a method of the generated types, such
// as OnItemAdded next to the event ItemAdded, or a workflow step whose
// method is named like an RPC of the workflow.
package main

import (
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/statefun-go/statefun/protoc-gen-statefun/internal/breaking"
	"github.com/statefun-go/statefun/protoc-gen-statefun/internal/generator"
	"github.com/statefun-go/statefun/protoc-gen-statefun/internal/initproject"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			os.Exit(initproject.Main(os.Args[2:], os.Stdout, os.Stderr))
		case "breaking":
			os.Exit(breaking.Main(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println("protoc-gen-statefun", generator.Version)
		return
	}
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		fmt.Fprint(os.Stderr, `protoc-gen-statefun is a protoc plugin: run it through buf generate or protoc --statefun_out.
It also has two commands:
  protoc-gen-statefun init DIR         create a new project in DIR that builds, tests green and serves
  protoc-gen-statefun breaking [DIR]   refuse proto changes that would make stored events or states unreadable
Each takes --help. See https://pkg.go.dev/github.com/statefun-go/statefun/protoc-gen-statefun
`)
		return
	}
	var flags flag.FlagSet
	protogen.Options{ParamFunc: flags.Set}.Run(func(plugin *protogen.Plugin) error {
		plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
		plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
		plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2023
		warnings, err := generator.Generate(plugin)
		// A plugin's standard output is its response; its standard error
		// is the one channel buf and protoc show the user.
		for _, w := range warnings {
			fmt.Fprintln(os.Stderr, w)
		}
		return err
	})
}
