package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	customerv1 "github.com/statefun-go/statefun/examples/customer/gen/customer/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
)

// TestDirectoryEndToEnd builds the customer server, creates customers over
// gRPC and asks the customer directory, a view of the key-value records,
// over gRPC (paged and streamed) and HTTP/JSON; a customer who moves
// leaves the old city's list. Then it kills the server (kill -9), starts it
// again, and the directory still answers and follows new records: on the
// embedded store and on Postgres.
func TestDirectoryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	t.Run("embedded", func(t *testing.T) {
		checkDirectory(t, bin, "--data-dir", t.TempDir())
	})
	t.Run("postgres", func(t *testing.T) {
		checkDirectory(t, bin, e2e.PostgresFlags(t, "e2e_customer")...)
	})
}

func checkDirectory(t *testing.T, bin string, storeFlags ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := e2e.Start(t, bin, storeFlags...)
	customers := customerv1.NewCustomerServiceClient(srv.Conn)
	for _, c := range []*customerv1.CreateRequest{
		createAda(),
		{CustomerId: "c2", Name: "Grace Hopper", Email: "grace@example.com", Address: home()},
		{CustomerId: "c3", Name: "Alan Turing", Email: "alan@example.com", Address: home()},
	} {
		if _, err := customers.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	waitForCity(t, ctx, srv, "Amsterdam", "Ada Lovelace,Alan Turing,Grace Hopper")
	if _, err := customers.ChangeAddress(ctx, &customerv1.ChangeAddressRequest{CustomerId: "c3", Address: work()}); err != nil {
		t.Fatal(err)
	}
	waitForCity(t, ctx, srv, "Berlin", "Alan Turing")
	waitForCity(t, ctx, srv, "Amsterdam", "Ada Lovelace,Grace Hopper")

	// Streamed, over gRPC.
	var byEmail []string
	for c, err := range customerv1.NewCustomerDirectoryViewClient(srv.Conn).CustomersByEmail(ctx, &customerv1.CustomersByEmailRequest{Email: "grace@example.com"}) {
		if err != nil {
			t.Fatal(err)
		}
		byEmail = append(byEmail, c.GetCustomerId())
	}
	if strings.Join(byEmail, ",") != "c2" {
		t.Errorf("customers with grace@example.com: %v, want c2", byEmail)
	}

	// HTTP/JSON, Connect protocol: a page of one, then the next.
	var page struct {
		Customers []struct {
			Name string `json:"name"`
		}
		NextPageToken string
	}
	postView(t, srv, "CustomersInCity", `{"city":"Amsterdam","page_size":1}`, &page)
	if len(page.Customers) != 1 || page.Customers[0].Name != "Ada Lovelace" || page.NextPageToken == "" {
		t.Fatalf("first page over HTTP: %+v, want Ada Lovelace and a next_page_token", page)
	}
	tok := page.NextPageToken
	page.Customers, page.NextPageToken = nil, "" // JSON leaves an empty token out
	postView(t, srv, "CustomersInCity", fmt.Sprintf(`{"city":"Amsterdam","page_size":1,"page_token":%q}`, tok), &page)
	if len(page.Customers) != 1 || page.Customers[0].Name != "Grace Hopper" {
		t.Fatalf("second page over HTTP: %+v, want Grace Hopper", page)
	}

	// kill -9: the rows are in the store; the updater resumes.
	srv.Kill(t)
	srv = e2e.Start(t, bin, storeFlags...)
	defer srv.Stop(t)
	customers = customerv1.NewCustomerServiceClient(srv.Conn)
	waitForCity(t, ctx, srv, "Amsterdam", "Ada Lovelace,Grace Hopper")
	if _, err := customers.ChangeAddress(ctx, &customerv1.ChangeAddressRequest{CustomerId: "c1", Address: work()}); err != nil {
		t.Fatal(err)
	}
	waitForCity(t, ctx, srv, "Berlin", "Ada Lovelace,Alan Turing")
}

// waitForCity waits until the names of the customers in city, paged over
// gRPC, are want.
func waitForCity(t *testing.T, ctx context.Context, srv *e2e.Server, city, want string) {
	t.Helper()
	directory := customerv1.NewCustomerDirectoryViewClient(srv.Conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var names []string
		for c, err := range directory.CustomersInCityAll(ctx, &customerv1.CustomersInCityRequest{City: city, PageSize: 2}) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, c.GetName())
		}
		if strings.Join(names, ",") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("customers in %s: %v, want %s\n%s", city, names, want, srv.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func postView(t *testing.T, srv *e2e.Server, method, body string, out any) {
	t.Helper()
	code, res := srv.Post(t, "/customer.v1.CustomerDirectoryService/"+method, body)
	if code != http.StatusOK {
		t.Fatalf("%s over HTTP: %d %s", method, code, res)
	}
	if err := json.Unmarshal([]byte(res), out); err != nil {
		t.Fatalf("%s over HTTP: %v: %s", method, err, res)
	}
}
