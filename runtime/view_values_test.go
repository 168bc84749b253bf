package statefun_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/keyvalue"
	view "github.com/statefun-go/statefun/testdata/view"
)

// customerNames is the updater of the customer_names view: a row per
// customer, keyed by the initial of its name.
type customerNames struct{}

func (customerNames) OnCustomer(ctx *statefun.ViewUpdateContext, row *view.CustomerName, c *keyvalue.Customer) (*view.CustomerName, error) {
	if c.GetName() == "" {
		return nil, nil
	}
	row.CustomerId, row.Name, row.Initial = ctx.EntityID(), c.GetName(), c.GetName()[:1]
	return row, nil
}

func valueViewRuntime(t *testing.T, st store.Store, views ...*statefun.View) *statefun.Runtime {
	t.Helper()
	if views == nil {
		views = []*statefun.View{view.NewCustomersByAddress(), view.NewCustomerNames(customerNames{})}
	}
	rt, err := statefun.New([]*statefun.Entity{keyvalue.NewCustomer(customerEntity{})}, statefun.WithStore(st), statefun.WithViews(views...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt
}

// customersAt lists the names of the customers at address, by name.
func customersAt(t *testing.T, conn grpc.ClientConnInterface, address string) []string {
	t.Helper()
	res, err := view.NewCustomersByAddressViewClient(conn).GetCustomersAt(testContext(t), &view.GetCustomersAtRequest{Address: address})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range res.GetCustomers() {
		names = append(names, c.GetName())
	}
	return names
}

// namesStartingWith lists "id:name" of the customer_names rows of an initial.
func namesStartingWith(t *testing.T, conn grpc.ClientConnInterface, initial string) []string {
	t.Helper()
	var got []string
	for r, err := range view.NewCustomerNamesViewClient(conn).FindByInitial(testContext(t), &view.FindByInitialRequest{Initial: initial}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetCustomerId()+":"+r.GetName())
	}
	return got
}

// TestViewOfKeyValueEntity: a view of a key-value entity follows its
// values on every store: a new value replaces the row (the customer who
// moved is no longer listed at the old address), and an updater's rows
// know their entity.
func TestViewOfKeyValueEntity(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) store.Store{
		"memory":   func(*testing.T) store.Store { return memory.New() },
		"embedded": openEmbedded,
		"postgres": openPostgres,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rt := valueViewRuntime(t, open(t))
			conn := rt.ClientConn()
			customers := keyvalue.NewCustomerEntityClient(conn)
			ctx := testContext(t)
			for _, c := range []struct{ id, name, address string }{
				{"c1", "Ada", "London"}, {"c2", "Alan", "London"}, {"c3", "Grace", "Paris"},
			} {
				if _, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: c.id, Name: c.name, Address: c.address}); err != nil {
					t.Fatal(err)
				}
			}
			eventuallyEqual(t, "customers in London", "Ada,Alan", func() string { return strings.Join(customersAt(t, conn, "London"), ",") })
			eventuallyEqual(t, "names with A", "Ada,Alan", func() string { return sortedNames(namesStartingWith(t, conn, "A")) })

			for _, to := range []string{"Rome", "Oslo", "Paris"} {
				if _, err := customers.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "c1", Address: to}); err != nil {
					t.Fatal(err)
				}
			}
			eventuallyEqual(t, "customers in Paris", "Ada,Grace", func() string { return strings.Join(customersAt(t, conn, "Paris"), ",") })
			for _, gone := range []string{"Rome", "Oslo"} {
				if got := customersAt(t, conn, gone); len(got) != 0 {
					t.Errorf("customers in %s: %v; Ada moved on to Paris", gone, got)
				}
			}
			if got := strings.Join(customersAt(t, conn, "London"), ","); got != "Alan" {
				t.Errorf("customers in London: %s, want Alan (Ada moved)", got)
			}
			if got := strings.Join(namesStartingWith(t, conn, "A"), ","); !strings.Contains(got, "c1:Ada") || !strings.Contains(got, "c2:Alan") {
				t.Errorf("names with A: %s, want c1:Ada and c2:Alan", got)
			}
		})
	}
}

// TestViewOfKeyValueEntityAddedLater: a view added to a server whose
// key-value entities were written before it existed is built from every
// stored value, and a restart resumes it.
func TestViewOfKeyValueEntityAddedLater(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openDir := func() store.Store {
		st, err := embedded.Open(dir, embedded.WithNoSync(true))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := openDir()
	rt, err := statefun.New([]*statefun.Entity{keyvalue.NewCustomer(customerEntity{})}, statefun.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	customers := keyvalue.NewCustomerEntityClient(rt.ClientConn())
	ctx := testContext(t)
	const n = 30
	for i := range n {
		if _, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: fmt.Sprint("c", i), Name: fmt.Sprint("Name", i), Address: "Lyon"}); err != nil {
			t.Fatal(err)
		}
	}
	closeRuntime(t, rt)
	_ = st.Close()

	st = openDir()
	t.Cleanup(func() { _ = st.Close() })
	rt = valueViewRuntime(t, st, view.NewCustomersByAddress())
	eventuallyEqual(t, "customers in Lyon", n, func() int { return len(customersAt(t, rt.ClientConn(), "Lyon")) })
}

func sortedNames(rows []string) string {
	var names []string
	for _, r := range rows {
		names = append(names, r[strings.IndexByte(r, ':')+1:])
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
