// Package noop is the floor of the benchmark: the shopping cart's gRPC API
// with handlers that return at once. Whatever it costs is gRPC, HTTP/2, the
// loopback network and the load generator; a system that stores state
// cannot be faster, so the others are measured as a fraction of it.
// ConnectHandler is the same floor for the HTTP/JSON cells: the API served
// by connect-go.
package noop

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// Server implements cartv1.ShoppingCartServiceServer doing no work.
type Server struct {
	cartv1.UnimplementedShoppingCartServiceServer
}

// cart is what GetCart returns: four lines, the size a cart reaches in the
// benchmark (which adds one of four SKUs per write), so that replies weigh
// what the other systems' replies weigh.
var cart = &cartv1.Cart{Items: []*cartv1.LineItem{
	{Sku: "sku-0", Quantity: 3}, {Sku: "sku-1", Quantity: 2},
	{Sku: "sku-2", Quantity: 4}, {Sku: "sku-3", Quantity: 1},
}}

// AddItem returns at once.
func (Server) AddItem(context.Context, *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// RemoveItem returns at once.
func (Server) RemoveItem(context.Context, *cartv1.RemoveItemRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// Checkout returns at once.
func (Server) Checkout(context.Context, *cartv1.CheckoutRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// GetCart returns a fixed four-line cart. The message is shared and only
// read (marshalling does not change it), so no copy is made per call.
func (Server) GetCart(context.Context, *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	return cart, nil
}

// ConnectHandler serves the same no-op service with the Connect protocol
// (and gRPC and gRPC-Web, which connect-go handlers serve too): each
// method a connect-go unary handler, built by hand with
// connect.NewUnaryHandler, that does what Server does. Requests are
// decoded and replies encoded by connect-go's own codecs (binary protobuf,
// and protojson for application/json), so a call costs what a connect-go
// server's call costs when its handler does nothing: the floor of the
// benchmark's HTTP/JSON cells.
func ConnectHandler() http.Handler {
	var s Server
	mux := http.NewServeMux()
	mux.Handle(cartv1.ShoppingCartService_AddItem_FullMethodName, connect.NewUnaryHandler(cartv1.ShoppingCartService_AddItem_FullMethodName,
		func(ctx context.Context, req *connect.Request[cartv1.AddItemRequest]) (*connect.Response[emptypb.Empty], error) {
			res, err := s.AddItem(ctx, req.Msg)
			return connect.NewResponse(res), err
		}))
	mux.Handle(cartv1.ShoppingCartService_RemoveItem_FullMethodName, connect.NewUnaryHandler(cartv1.ShoppingCartService_RemoveItem_FullMethodName,
		func(ctx context.Context, req *connect.Request[cartv1.RemoveItemRequest]) (*connect.Response[emptypb.Empty], error) {
			res, err := s.RemoveItem(ctx, req.Msg)
			return connect.NewResponse(res), err
		}))
	mux.Handle(cartv1.ShoppingCartService_Checkout_FullMethodName, connect.NewUnaryHandler(cartv1.ShoppingCartService_Checkout_FullMethodName,
		func(ctx context.Context, req *connect.Request[cartv1.CheckoutRequest]) (*connect.Response[emptypb.Empty], error) {
			res, err := s.Checkout(ctx, req.Msg)
			return connect.NewResponse(res), err
		}))
	mux.Handle(cartv1.ShoppingCartService_GetCart_FullMethodName, connect.NewUnaryHandler(cartv1.ShoppingCartService_GetCart_FullMethodName,
		func(ctx context.Context, req *connect.Request[cartv1.GetCartRequest]) (*connect.Response[cartv1.Cart], error) {
			res, err := s.GetCart(ctx, req.Msg)
			return connect.NewResponse(res), err
		}))
	return mux
}
