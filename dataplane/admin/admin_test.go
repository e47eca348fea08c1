package admin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"svc"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAdmin(t *testing.T) {
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cert, key := selfSigned(t)
	ssl, _ := json.Marshal(map[string]any{"type": "client", "cert": cert, "key": key,
		"labels": map[string]string{apisix.LabelXDSName: "identity", apisix.LabelXDSVersion: "v7"}})
	up := `{"nodes":[{"host":"127.0.0.1","port":80,"weight":1}],"type":"chash","hash_on":"vars","key":"remote_addr","labels":{"meshagent.xds.name":"outbound|80||svc","meshagent.xds.version":"v3"}}`
	ctx := context.Background()
	for k, v := range map[string]string{"/apisix/ssls/identity": string(ssl), "/apisix/upstreams/svc": up} {
		if _, err := st.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	var ready atomic.Bool
	quit := make(chan struct{})
	s, err := New(Options{
		Listen: "127.0.0.1:0", Store: st, Ready: ready.Load,
		XDSStatus: func() any {
			return map[string]any{"types": []map[string]any{{"type_url": "cds", "state": "nacked", "last_nack_message": "cluster \"x\": lb_policy: bad"}}}
		},
		Quit: func() { close(quit) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()

	if code, _ := get(t, base+"/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready before config = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready after config = %d, want 200", code)
	}

	code, body := get(t, base+"/config_dump")
	if code != http.StatusOK {
		t.Fatalf("/config_dump = %d %s", code, body)
	}
	if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, strings.Split(key, "\n")[1]) {
		t.Fatalf("config dump leaks key material:\n%s", body)
	}
	var d Dump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]DumpObject{}
	for _, o := range d.Objects {
		var c bytes.Buffer
		if err := json.Compact(&c, o.Value); err != nil {
			t.Fatal(err)
		}
		o.Value = c.Bytes()
		byKey[o.Key] = o
	}
	if o := byKey["/apisix/ssls/identity"]; o.XDSName != "identity" || o.XDSVersion != "v7" || !strings.Contains(string(o.Value), `"key":"[redacted]"`) || !strings.Contains(string(o.Value), "BEGIN CERTIFICATE") {
		t.Errorf("ssl dump %+v %s", o, o.Value)
	}
	if o := byKey["/apisix/upstreams/svc"]; o.XDSName != "outbound|80||svc" || !strings.Contains(string(o.Value), `"key":"remote_addr"`) {
		t.Errorf("upstream dump %+v %s", o, o.Value)
	}
	if d.Revision != st.Rev() {
		t.Errorf("dump revision %d, store %d", d.Revision, st.Rev())
	}

	code, body = get(t, base+"/xds_status")
	if code != http.StatusOK || !strings.Contains(body, "lb_policy: bad") {
		t.Fatalf("/xds_status = %d %s", code, body)
	}

	if code, _ := get(t, base+"/quitquitquit"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit = %d, want 405", code)
	}
	resp, err := http.Post(base+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-quit:
	case <-time.After(5 * time.Second):
		t.Fatal("quit not called")
	}
}

func TestAdminRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:15000", ":15000"} {
		_, err := New(Options{Listen: addr, Store: nopRanger{}, Ready: func() bool { return true }})
		if err == nil {
			t.Errorf("%s accepted", addr)
		}
	}
}

type nopRanger struct{}

func (nopRanger) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{}, nil
}

func TestRedact(t *testing.T) {
	in := `{"a":{"private_key":"x","client_key":"y"},"b":["-----BEGIN RSA PRIVATE KEY-----\nabc"],"c":{"cert":"C","keys":["k1"],"key":"k"},"d":{"key":"remote_addr"}}`
	var v any
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(Redact(v))
	want := `{"a":{"client_key":"[redacted]","private_key":"[redacted]"},"b":["[redacted]"],"c":{"cert":"C","key":"[redacted]","keys":"[redacted]"},"d":{"key":"remote_addr"}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
