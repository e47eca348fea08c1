package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/xds/demo"
)

// TestRunXDS runs `meshagent run --xds` against the demo control plane:
// readiness, traffic, /xds_status, /config_dump, and /quitquitquit ending
// the process cleanly.
func TestRunXDS(t *testing.T) {
	listen, admin := freeAddr(t), freeAddr(t)
	env, err := demo.Start(context.Background(), demo.Options{Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runRun(ctx, []string{"--xds", env.ControlPlane.Addr(), "--node-id", demo.NodeID, "--delta",
			"--admin-listen", admin, "--http-listen", "", "--log-level", "error"})
	}()
	eventually(t, "ready", func() string {
		if code, body := get("http://" + admin + "/ready"); code != http.StatusOK {
			return body
		}
		return ""
	})
	eventually(t, "traffic", func() string {
		if code, body := get("http://" + listen + "/a"); code != http.StatusOK || !strings.HasPrefix(body, "backend-a ") {
			return body
		}
		return ""
	})
	if code, body := get("http://" + admin + "/xds_status"); code != http.StatusOK || !strings.Contains(body, `"mode": "delta"`) || !strings.Contains(body, `"state": "acked"`) {
		t.Errorf("/xds_status: %d %s", code, body)
	}
	if code, body := get("http://" + admin + "/config_dump?source=xds"); code != http.StatusOK || !strings.Contains(body, `"xds_name": "backend-a"`) {
		t.Errorf("/config_dump: %d %.300s", code, body)
	}
	if code, body := get("http://" + admin + "/stats"); code != http.StatusOK || !strings.Contains(body, `"nacks": 0`) || !strings.Contains(body, `"pushes"`) {
		t.Errorf("/stats: %d %s", code, body)
	}
	resp, err := http.Post("http://"+admin+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("/quitquitquit did not end run")
	}
}

func TestRunXDSFlagErrors(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "apisix.yaml")
	if err := os.WriteFile(yaml, []byte("routes: []\n#END\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--xds", "127.0.0.1:1", "--apisix-yaml", yaml, "--http-listen", ""}, "exclusive"},
		{[]string{"--xds", "127.0.0.1:1", "--preset", "consul", "--http-listen", ""}, "--preset"},
		{[]string{"--xds", "127.0.0.1:1", "--preset", "kuma", "--http-listen", ""}, "dataplane name"},
		{[]string{"--xds", "127.0.0.1:1", "--node-metadata", "[1]", "--node-id", "n", "--http-listen", ""}, "--node-metadata"},
	} {
		err := runRun(context.Background(), c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}
