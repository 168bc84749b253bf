package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// HTTP versions a ConnectClient speaks.
const (
	HTTP1 = 1 // HTTP/1.1: one request at a time per connection
	HTTP2 = 2 // HTTP/2 without TLS (h2c, prior knowledge): one connection, requests multiplexed
)

// ConnectClient calls the shopping cart with the Connect protocol's unary
// JSON (POST /shop.cart.v1.ShoppingCartService/<Method>, Content-Type
// application/json), as a Connect client or curl does. It implements
// cartv1.ShoppingCartServiceClient, so that the load drives it as it
// drives a gRPC connection; call options are ignored.
//
// It is built to cost the load generator little: its transport keeps its
// connections open (HTTP/1.1: as many as requests in flight; HTTP/2: one,
// multiplexed, as a gRPC connection is), requests are encoded by
// appending to a byte slice (no reflection), and replies are checked
// (status, content type) and read to their end but not decoded: the
// benchmark needs their arrival, not their contents. GetCart therefore
// returns an empty cart. Compression is off, as it is for the gRPC
// clients.
type ConnectClient struct {
	transport *http.Transport
	version   int
	base      *url.URL
	urls      map[string]*url.URL
}

// NewConnectClient returns a client of the server at base (such as
// "http://127.0.0.1:8080") over the HTTP version given (HTTP1 or HTTP2).
// Each client has a transport, and so connections, of its own.
func NewConnectClient(base string, version int) (*ConnectClient, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("connect client: %s: want http:// (h2c for HTTP/2)", base)
	}
	var protocols http.Protocols
	switch version {
	case HTTP1:
		protocols.SetHTTP1(true)
	case HTTP2:
		protocols.SetUnencryptedHTTP2(true)
	default:
		return nil, fmt.Errorf("connect client: HTTP version %d: want 1 or 2", version)
	}
	c := &ConnectClient{
		transport: &http.Transport{
			Protocols:          &protocols,
			DialContext:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			DisableCompression: true,
			// HTTP/1.1 needs a connection per request in flight, and
			// keeps each for the next request.
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		},
		version: version,
		base:    u,
		urls:    map[string]*url.URL{},
	}
	for _, m := range []string{
		cartv1.ShoppingCartService_AddItem_FullMethodName, cartv1.ShoppingCartService_RemoveItem_FullMethodName,
		cartv1.ShoppingCartService_Checkout_FullMethodName, cartv1.ShoppingCartService_GetCart_FullMethodName,
	} {
		mu := *u
		mu.Path = strings.TrimSuffix(u.Path, "/") + m
		c.urls[m] = &mu
	}
	return c, nil
}

// Close closes the client's idle connections.
func (c *ConnectClient) Close() { c.transport.CloseIdleConnections() }

// AddItem implements cartv1.ShoppingCartServiceClient.
func (c *ConnectClient) AddItem(ctx context.Context, in *cartv1.AddItemRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	body, ok := appendField(append(make([]byte, 0, 64), '{'), "cartId", in.GetCartId())
	if ok {
		body, ok = appendField(append(body, ','), "sku", in.GetSku())
	}
	if !ok {
		return nil, c.callMessage(ctx, cartv1.ShoppingCartService_AddItem_FullMethodName, in)
	}
	body = strconv.AppendInt(append(body, `,"quantity":`...), int64(in.GetQuantity()), 10)
	body = append(body, '}')
	return &emptypb.Empty{}, c.call(ctx, cartv1.ShoppingCartService_AddItem_FullMethodName, body)
}

// RemoveItem implements cartv1.ShoppingCartServiceClient.
func (c *ConnectClient) RemoveItem(ctx context.Context, in *cartv1.RemoveItemRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, c.callMessage(ctx, cartv1.ShoppingCartService_RemoveItem_FullMethodName, in)
}

// Checkout implements cartv1.ShoppingCartServiceClient.
func (c *ConnectClient) Checkout(ctx context.Context, in *cartv1.CheckoutRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, c.callMessage(ctx, cartv1.ShoppingCartService_Checkout_FullMethodName, in)
}

// ExpireCart implements cartv1.ShoppingCartServiceClient.
func (c *ConnectClient) ExpireCart(ctx context.Context, in *cartv1.ExpireCartRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, c.callMessage(ctx, cartv1.ShoppingCartService_ExpireCart_FullMethodName, in)
}

// GetCart implements cartv1.ShoppingCartServiceClient. The cart it
// returns is empty: the reply is read, not decoded.
func (c *ConnectClient) GetCart(ctx context.Context, in *cartv1.GetCartRequest, _ ...grpc.CallOption) (*cartv1.Cart, error) {
	body, ok := appendField(append(make([]byte, 0, 32), '{'), "cartId", in.GetCartId())
	if !ok {
		return nil, c.callMessage(ctx, cartv1.ShoppingCartService_GetCart_FullMethodName, in)
	}
	return &cartv1.Cart{}, c.call(ctx, cartv1.ShoppingCartService_GetCart_FullMethodName, append(body, '}'))
}

// appendField appends "name":"value" when value needs no escaping in
// JSON (the benchmark's cart IDs and SKUs never do); ok is false
// otherwise.
func appendField(b []byte, name, value string) ([]byte, bool) {
	for i := range len(value) {
		if ch := value[i]; ch < 0x20 || ch == '"' || ch == '\\' || ch >= utf8.RuneSelf {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, value...)
	return append(b, '"'), true
}

// callMessage sends a request encoded by protojson: for what appendField
// cannot encode.
func (c *ConnectClient) callMessage(ctx context.Context, method string, in proto.Message) error {
	body, err := protojson.Marshal(in)
	if err != nil {
		return err
	}
	return c.call(ctx, method, body)
}

// The request headers' values, shared by every request (the transport
// only reads them).
var (
	jsonContentType = []string{"application/json"}
	connectVersion  = []string{"1"}
)

// call posts one request and reads its reply.
func (c *ConnectClient) call(ctx context.Context, method string, body []byte) error {
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           c.urls[method],
		Host:          c.base.Host,
		Header:        http.Header{"Content-Type": jsonContentType, "Connect-Protocol-Version": connectVersion},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		// Lets the transport send the request again on another
		// connection when the one it picked turns out closed.
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
	}).WithContext(ctx)
	if d, ok := ctx.Deadline(); ok {
		// As a Connect client sends it: the server may give up early.
		req.Header["Connect-Timeout-Ms"] = []string{strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10)}
	}
	res, err := c.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.ProtoMajor != c.version {
		_, _ = io.Copy(io.Discard, res.Body)
		return fmt.Errorf("%s: answered over %s, asked for HTTP/%d", method, res.Proto, c.version)
	}
	if res.StatusCode != http.StatusOK {
		return connectError(method, res)
	}
	if mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		_, _ = io.Copy(io.Discard, res.Body)
		return fmt.Errorf("%s: reply of type %q, want application/json", method, res.Header.Get("Content-Type"))
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return fmt.Errorf("%s: read the reply: %w", method, err)
	}
	return nil
}

// ConnectError is an error the server answered, with its Connect code.
type ConnectError struct {
	Method  string
	Status  int
	Code    string
	Message string
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("%s: HTTP %d, %s: %s", e.Method, e.Status, e.Code, e.Message)
}

// connectError reads a Connect error reply: a JSON object with a code and
// a message.
func connectError(method string, res *http.Response) error {
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	_, _ = io.Copy(io.Discard, res.Body)
	e := &ConnectError{Method: method, Status: res.StatusCode}
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if jerr := json.Unmarshal(data, &body); jerr == nil && body.Code != "" {
		e.Code, e.Message = body.Code, body.Message
	} else {
		e.Code, e.Message = "unknown", string(bytes.TrimSpace(data))
	}
	if err != nil {
		return errors.Join(e, err)
	}
	return e
}
