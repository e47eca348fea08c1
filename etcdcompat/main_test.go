package etcdcompat

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// refEtcd is the real etcd every differential test compares against: one
// embedded instance per test binary, on loopback ports.
var refEtcd struct {
	e         *embed.Etcd
	clientURL string
}

func TestMain(m *testing.M) {
	if os.Getenv(rssHelperEnv) != "" {
		rssHelper()
		return
	}
	code, err := runWithEtcd(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdcompat tests: embedded etcd:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithEtcd(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "etcdcompat-ref-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	e, clientURL, err := startEmbedded(dir)
	if err != nil {
		return 0, err
	}
	defer e.Close()
	refEtcd.e = e
	refEtcd.clientURL = clientURL
	return m.Run(), nil
}

// startEmbedded starts a single-member etcd with its data in dir, on free
// loopback ports, and waits until it serves.
func startEmbedded(dir string) (*embed.Etcd, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[0]))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[1]))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 30s")
	}
	return e, cu.String(), nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
