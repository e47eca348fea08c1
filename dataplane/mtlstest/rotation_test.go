package mtlstest

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// probeClient is an mTLS client straight to the server meshagent with its
// own workload certificate; keepAlive false makes every request a new
// handshake.
func probeClient(t *testing.T, ca *CA, keepAlive bool) *http.Client {
	t.Helper()
	l := ca.MustIssue("spiffe://default/probe", time.Hour, ECDSA)
	cert, err := tls.X509KeyPair([]byte(l.CertPEM), []byte(l.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		// The server's chain and SAN are checked by the meshagent client
		// in the other tests; the probe records what it is served.
		TLSClientConfig:   &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}, //nolint:gosec // test probe
		DisableKeepAlives: !keepAlive,
		MaxConnsPerHost:   1,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// served returns the serial of the server certificate of one request.
func served(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return "", &statusErr{resp.StatusCode}
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return "status " + http.StatusText(e.code) }

// Certificates of both meshagents are replaced in the store every 150ms
// while requests flow through the client meshagent and new handshakes hit
// the server one: no request fails, new handshakes get the new
// certificates, and an established connection keeps its own.
func TestRotationUnderLoad(t *testing.T) {
	ca := mustCA(t, "mesh")
	p := newPair(t, ca, pairOpts{})
	direct := "https://" + p.srvAddr + "/probe"
	kept := probeClient(t, ca, true)
	first, err := served(kept, direct)
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, p.srv.logs)
	}

	const duration = 2 * time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var mu sync.Mutex
	serials := map[string]bool{}
	hashes := map[string]bool{}
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	entry := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st, xfcc, err := get(entry, p.entry+"/load")
				if err == nil && st != 200 {
					err = &statusErr{st}
				}
				if err != nil {
					fail(err)
					continue
				}
				ok.Add(1)
				mu.Lock()
				hashes[xfcc] = true
				mu.Unlock()
			}
		}()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := probeClient(t, ca, false)
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := served(c, direct)
				if err != nil {
					fail(err)
					continue
				}
				ok.Add(1)
				mu.Lock()
				serials[s] = true
				mu.Unlock()
			}
		}()
	}
	var last, lastClient *Leaf
	rotations := 0
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		time.Sleep(150 * time.Millisecond)
		last = ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA)
		p.srv.identity(last, "")
		lastClient = ca.MustIssue("spiffe://default/web", time.Hour, ECDSA)
		p.cli.identity(lastClient, "")
		rotations++
	}
	close(stop)
	wg.Wait()
	if e := firstErr.Load(); e != nil || failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during rotation, first: %v\nserver logs:\n%s", failed.Load(), ok.Load()+failed.Load(), e, p.srv.logs)
	}
	t.Logf("%d requests, %d rotations, %d server certificates served to new handshakes, %d client certificates seen by the app",
		ok.Load(), rotations, len(serials), len(hashes))
	if len(serials) < 2 {
		t.Fatalf("new handshakes saw %d server certificates over %d rotations, want >= 2", len(serials), rotations)
	}
	s, err := served(probeClient(t, ca, false), direct)
	if err != nil || s != last.Serial.String() {
		t.Fatalf("new handshake after rotation got serial %s (%v), want the latest %s", s, err, last.Serial)
	}
	// A new upstream connection of the client meshagent (a changed
	// upstream gets a new pool) presents the latest client certificate.
	p.cli.put("/apisix/upstreams/backend", map[string]any{
		"scheme": "https", "type": "roundrobin", "retries": 0, "keepalive_pool": map[string]any{"size": 8},
		"nodes": []map[string]any{{"host": "127.0.0.1", "port": portOf(p.srvAddr), "weight": 1}},
		"tls":   map[string]any{"sni": "backend", "secret_name": identityName, "ca_secret_name": caName, "match_subject_alt_names": []string{"spiffe://default/backend"}},
	})
	_, xfcc, err := get(entry, p.entry+"/after")
	if want := "Hash=" + leafHash(t, lastClient); err != nil || !strings.HasPrefix(xfcc, want) {
		t.Fatalf("new upstream connection presented %q (%v), want the latest client certificate %s", xfcc, err, want)
	}
	// The connection opened before any rotation is still served, with the
	// certificate it was established with.
	again, err := served(kept, direct)
	if err != nil || again != first {
		t.Fatalf("established connection: serial %s (%v), want its original %s", again, err, first)
	}
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// leafHash is the hex SHA-256 of a certificate's DER (XFCC's Hash).
func leafHash(t *testing.T, l *Leaf) string {
	t.Helper()
	b, _ := pem.Decode([]byte(l.CertPEM))
	if b == nil {
		t.Fatal("bad PEM")
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

// The mesh CA itself rotates: both sides trust old+new, move to leaves of
// the new CA, then drop the old CA; a peer still on the old CA is refused.
func TestCARotation(t *testing.T) {
	oldCA, newCA := mustCA(t, "mesh-1"), mustCA(t, "mesh-2")
	p := newPair(t, oldCA, pairOpts{})
	check := func(step string, want int) {
		t.Helper()
		st, _, err := get(http.DefaultClient, p.entry+"/ca")
		if err != nil || st != want {
			t.Fatalf("%s: status %d (%v), want %d\nserver logs:\n%s", step, st, err, want, p.srv.logs)
		}
	}
	check("old CA", 200)
	bundle := oldCA.PEM + newCA.PEM
	p.srv.identity(oldCA.MustIssue("spiffe://default/backend", time.Hour, ECDSA), bundle)
	p.cli.identity(oldCA.MustIssue("spiffe://default/web", time.Hour, ECDSA), bundle)
	check("bundle", 200)
	p.srv.identity(newCA.MustIssue("spiffe://default/backend", time.Hour, ECDSA), bundle)
	check("server on new CA", 200)
	p.cli.identity(newCA.MustIssue("spiffe://default/web", time.Hour, ECDSA), bundle)
	p.srv.identity(newCA.MustIssue("spiffe://default/backend", time.Hour, ECDSA), newCA.PEM)
	p.cli.identity(newCA.MustIssue("spiffe://default/web", time.Hour, ECDSA), newCA.PEM)
	check("new CA only", 200)
	// A new handshake with a new-CA certificate is served, one with an
	// old-CA certificate is refused.
	if _, err := served(probeClient(t, newCA, false), "https://"+p.srvAddr+"/ca"); err != nil {
		t.Fatalf("new-CA peer refused: %v", err)
	}
	st, err := served(probeClient(t, oldCA, false), "https://"+p.srvAddr+"/ca")
	if err == nil {
		t.Fatalf("old-CA peer served (serial %s)", st)
	}
	p.srv.logs.waitFor(t, "mtls: client certificate rejected", "spiffe://default/probe", "unknown authority")
}
