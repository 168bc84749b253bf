package reliability

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// TestPasswordNeverShown starts the binary with database URLs holding a
// distinctive password, in every form pgx reads (user info, URL
// parameter, key=value string), against a database that rejects it, one
// that cannot be reached and one that accepts it, and greps everything the
// process writes. It found the key=value and URL-parameter forms printed
// whole in the "store: postgres" log line.
func TestPasswordNeverShown(t *testing.T) {
	t.Parallel()
	bin := serverBinary(t)
	requireDatabase(t)
	const password = "Pw-7f3a9c-Distinctive"
	fake := startFakePostgres(t)
	real := databaseAddr(t)
	realHost, realPort, _ := net.SplitHostPort(real)

	type attempt struct {
		name   string
		url    string
		starts bool // the database accepts the login (trust auth ignores the password)
	}
	attempts := []attempt{
		{"wrong password, URL", "postgres://ada:" + password + "@" + fake.addr + "/db?sslmode=disable", false},
		{"wrong password, URL parameter", "postgres://ada@" + fake.addr + "/db?sslmode=disable&password=" + password, false},
		{"wrong password, key=value", "host=" + fake.host + " port=" + fake.port + " user=ada dbname=db sslmode=disable password=" + password, false},
		{"wrong password, SSL preferred", "postgres://ada:" + password + "@" + fake.addr + "/db", false},
		{"unreachable host, URL", "postgres://ada:" + password + "@127.0.0.1:1/db?connect_timeout=3", false},
		{"unreachable host, key=value", "host=127.0.0.1 port=1 user=ada password='" + password + "' dbname=db connect_timeout=3", false},
		{"unparsable URL", "postgres://ada:" + password + "@127.0.0.1:notaport/db", false},
		{"accepted, URL", "postgres://postgres:" + password + "@" + real + "/statefun_test?sslmode=disable", true},
		{"accepted, URL parameter", "postgres://postgres@" + real + "/statefun_test?sslmode=disable&password=" + password, true},
		{"accepted, key=value", "host=" + realHost + " port=" + realPort + " user=postgres dbname=statefun_test sslmode=disable password=" + password, true},
	}
	for _, a := range attempts {
		schema := newSchema(t, "password")
		for _, format := range []string{"text", "json"} {
			flags := []string{"--database-url", a.url, "--database-schema", schema, "--log-format", format}
			// migrate logs the database too, and fails or succeeds the same.
			out, err := exec.Command(bin, append([]string{"migrate"}, flags...)...).CombinedOutput()
			if a.starts != (err == nil) {
				t.Errorf("%s: migrate: %v, want success %v\n%s", a.name, err, a.starts, out)
			}
			if strings.Contains(string(out), password) {
				t.Errorf("%s: migrate (%s log) shows the password:\n%s", a.name, format, out)
			}
			if !a.starts {
				cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--http-listen", ""}, flags...)...)
				cmd.Env = filteredEnv()
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Errorf("%s: serve exited with %v, want exit code 1\n%s", a.name, err, out)
				}
				if strings.Contains(string(out), password) {
					t.Errorf("%s: serve (%s log) shows the password:\n%s", a.name, format, out)
				}
				continue
			}
			srv := startServer(t, serverConfig{flags: flags})
			if _, err := srv.carts.AddItem(t.Context(), &cartv1.AddItemRequest{CartId: "c", Sku: "s", Quantity: 1}); err != nil {
				t.Errorf("%s: %v", a.name, err)
			}
			if err := srv.term(); err != nil {
				t.Errorf("%s: SIGTERM: %v", a.name, err)
			}
			if strings.Contains(srv.log.String(), password) {
				t.Errorf("%s: the server's %s log shows the password:\n%s", a.name, format, srv.log)
			}
		}
		count("password leak checks", 2)
	}
	// The fake database asked for the password in clear text: it must have
	// received it, or the wrong-password cases tested nothing.
	if got := fake.passwords(); !strings.Contains(strings.Join(got, " "), password) {
		t.Errorf("the fake database never received the password (got %q): the wrong-password cases did not log in", got)
	}
}

// fakePostgres speaks just enough of the Postgres protocol to ask for a
// password in clear text and reject it, as a server with password
// authentication does for a wrong one. (The shared test database trusts
// every local login, so it cannot reject a password.)
type fakePostgres struct {
	addr, host, port string
	mu               sync.Mutex
	got              []string
}

func (f *fakePostgres) passwords() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func startFakePostgres(t *testing.T) *fakePostgres {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePostgres{addr: ln.Addr().String()}
	f.host, f.port, _ = net.SplitHostPort(f.addr)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { f.serve(conn) })
		}
	})
	return f
}

func (f *fakePostgres) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(hangLimit))
	backend := pgproto3.NewBackend(conn, conn)
	var user string
	for user == "" {
		msg, err := backend.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			// No encryption here; the client goes on in plain text.
			if _, err := conn.Write([]byte("N")); err != nil {
				return
			}
		case *pgproto3.StartupMessage:
			user = m.Parameters["user"]
		default:
			return
		}
	}
	backend.Send(&pgproto3.AuthenticationCleartextPassword{})
	if backend.Flush() != nil || backend.SetAuthType(pgproto3.AuthTypeCleartextPassword) != nil {
		return
	}
	msg, err := backend.Receive()
	if err != nil {
		return
	}
	if pw, ok := msg.(*pgproto3.PasswordMessage); ok {
		f.mu.Lock()
		f.got = append(f.got, pw.Password)
		f.mu.Unlock()
	}
	backend.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: fmt.Sprintf("password authentication failed for user %q", user)})
	_ = backend.Flush()
}

// TestTLS: one pair of flags serves gRPC and HTTP/JSON over TLS. The test
// makes its own self-signed certificate, calls both ports with a client
// that trusts it, and checks that plaintext clients are refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t)
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	srv := startServer(t, serverConfig{
		flags: []string{"--data-dir", t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile},
		tls:   clientTLS,
	})
	ctx := t.Context()
	if _, err := srv.carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "tls", Sku: "lock", Quantity: 2}); err != nil {
		t.Fatalf("AddItem over gRPC with TLS: %v", err)
	}

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: hangLimit}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+srv.httpAddr+"/shop.cart.v1.ShoppingCartService/GetCart", strings.NewReader(`{"cart_id":"tls"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	res, err := https.Do(req)
	if err != nil {
		t.Fatalf("GetCart over HTTP/JSON with TLS: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	var got struct {
		Items []struct {
			Sku      string `json:"sku"`
			Quantity int    `json:"quantity"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &got); err != nil || res.StatusCode != http.StatusOK || len(got.Items) != 1 || got.Items[0].Quantity != 2 {
		t.Errorf("GetCart over HTTPS: %d %s (%v), want the cart with 2 locks", res.StatusCode, body, err)
	}
	if res.TLS == nil {
		t.Error("the HTTP/JSON reply did not come over TLS")
	}
	health, err := https.Get("https://" + srv.httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz over TLS: %v", err)
	}
	_ = health.Body.Close()
	if health.StatusCode != http.StatusOK {
		t.Errorf("/healthz over TLS: %d", health.StatusCode)
	}

	// Plaintext clients get nothing.
	plain, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cartv1.NewShoppingCartServiceClient(plain).GetCart(callCtx, &cartv1.GetCartRequest{CartId: "tls"})
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Errorf("plaintext gRPC to the TLS port: %v, want a refused connection", err)
	}
	if res, err := (&http.Client{Timeout: hangLimit}).Get("http://" + srv.httpAddr + "/healthz"); err == nil {
		_ = res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS port was served")
		}
	}
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns their paths and a pool that trusts the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "statefun reliability test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestSQLIsParameterised is a lint of the Postgres store: every statement
// it runs is a named query from queries.sql (or a migration), whose only
// substitution is the quoted schema name; values always travel as
// parameters. A string-built statement anywhere in the runtime's Go code
// fails it, with one exception: a view's statements (views.go), which
// must name a table and columns per view version. They are built from
// identifiers the store makes itself (a table name with a hash, columns
// c0…cN, all quoted), types and operators from closed switches, and $n
// placeholders; no Go string literal there may hold an SQL string
// literal, and every value is a parameter (TestViewParametersAreValuesNotSQL
// in runtime/ and the views conformance suite's hostile values check it).
func TestSQLIsParameterised(t *testing.T) {
	t.Parallel()
	const pgDir = "../runtime/store/postgres"
	placeholder := regexp.MustCompile(`\{\{[^}]*\}\}`)
	sqlFiles, _ := filepath.Glob(filepath.Join(pgDir, "migrations", "*.sql"))
	sqlFiles = append(sqlFiles, filepath.Join(pgDir, "queries.sql"))
	for _, name := range sqlFiles {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range placeholder.FindAllString(string(b), -1) {
			if p != "{{schema}}" {
				t.Errorf("%s: placeholder %s: only {{schema}} may be substituted into SQL; pass values as $n parameters", name, p)
			}
		}
		// Dynamic SQL inside the database is string-built SQL too.
		if regexp.MustCompile(`(?i)\bEXECUTE\s+(format|'|\$|[a-z_]+\s*\|\|)`).Match(b) {
			t.Errorf("%s: plpgsql EXECUTE of a built string; use static SQL with parameters", name)
		}
	}

	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir("../runtime", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		if strings.Contains(filepath.ToSlash(path), "/storetest/") {
			return nil // the conformance suite: hostile IDs on purpose, no SQL
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		if filepath.ToSlash(path) == viewSQLFile {
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if ok && lit.Kind == token.STRING && sqlText.MatchString(lit.Value) && strings.Contains(lit.Value, "'") {
					t.Errorf("%s: a view statement with an SQL string literal %s; pass the value as a $n parameter", fset.Position(lit.Pos()), lit.Value)
				}
				return true
			})
			checked++
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			argIndex := -1
			switch sel.Sel.Name {
			case "Exec", "Query", "QueryRow":
				argIndex = 1 // after the context
			case "Queue", "Prepare":
				argIndex = 0
			}
			if argIndex < 0 || len(call.Args) <= argIndex {
				return true
			}
			checked++
			if sql := call.Args[argIndex]; !isNamedQuery(sql) && !isMigration(sql) {
				t.Errorf("%s: %s runs SQL that is not a named query from queries.sql: %s", fset.Position(call.Pos()), sel.Sel.Name, render(fset, sql))
			}
			return true
		})
		// fmt.Sprintf and friends building SQL.
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if ok && lit.Kind == token.STRING && sqlText.MatchString(lit.Value) && !strings.Contains(path, "store/postgres/sql.go") {
				t.Errorf("%s: SQL in a Go string literal %s; put it in queries.sql", fset.Position(lit.Pos()), lit.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("the lint checked only %d database calls: it no longer finds them", checked)
	}
	count("SQL call sites linted", checked)
}

// viewSQLFile builds the statements of views (see TestSQLIsParameterised).
const viewSQLFile = "../runtime/store/postgres/views.go"

// sqlText is what a statement built in Go would contain.
var sqlText = regexp.MustCompile(`(?i)\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|SCHEMA|INDEX)|DROP\s+(TABLE|SCHEMA))\b`)

// isNamedQuery: s.sql.name or sql.name, a field of the statements parsed
// from queries.sql.
func isNamedQuery(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	switch x := sel.X.(type) {
	case *ast.Ident:
		return x.Name == "sql"
	case *ast.SelectorExpr:
		return x.Sel.Name == "sql"
	}
	return false
}

// isMigration: strings.ReplaceAll(m.sql, schemaPlaceholder, quoted), the
// one substitution, of the quoted schema into an embedded migration.
func isMigration(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 3 {
		return false
	}
	fn, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || fn.Sel.Name != "ReplaceAll" {
		return false
	}
	src, ok := call.Args[0].(*ast.SelectorExpr)
	ph, ok2 := call.Args[1].(*ast.Ident)
	return ok && ok2 && src.Sel.Name == "sql" && ph.Name == "schemaPlaceholder"
}

func render(fset *token.FileSet, e ast.Expr) string {
	start, end := fset.Position(e.Pos()), fset.Position(e.End())
	b, err := os.ReadFile(start.Filename)
	if err != nil || end.Offset > len(b) {
		return "?"
	}
	return string(b[start.Offset:end.Offset])
}
