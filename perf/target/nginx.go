package target

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/meshagent/meshagent/perf/load"
)

// Nginx runs nginx as a reverse proxy: one worker process (master_process
// off, so the measured pid is the worker), access log off, keep-alive
// upstream pools, HTTP/1.1 and h2c listeners, grpc_pass, and a stream
// (TCP) proxy when the stream module is available.
type Nginx struct {
	// Bin is the nginx binary; empty means "nginx" on PATH.
	Bin string

	dir  string
	proc *process
	// Note explains a protocol this nginx cannot serve (e.g. no stream
	// module); empty when all are served.
	Note string
}

// Name implements Target.
func (*Nginx) Name() string { return "nginx" }

var nginxConf = template.Must(template.New("nginx").Parse(`{{if .StreamModule}}load_module {{.StreamModule}};
{{end}}daemon off;
master_process off;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	http2_max_requests 1000000;
	upstream perf_http { server {{.B.HTTPAddr}}; keepalive 256; keepalive_requests 1000000; }
	upstream perf_grpc { server {{.B.GRPCAddr}}; keepalive 256; keepalive_requests 1000000; }
	server {
		listen {{.E.HTTP1}} reuseport;
		location / { proxy_pass http://perf_http; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen {{.E.H2}} http2;
		location / { proxy_pass http://perf_http; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen {{.E.GRPC}} http2;
		location / { grpc_pass grpc://perf_grpc; }
	}
}
{{if .Stream}}stream {
	upstream perf_tcp { server {{.B.TCPAddr}}; }
	server { listen {{.E.TCP}}; proxy_pass perf_tcp; }
}
{{end}}`))

// nginxStream tells whether nginx has the stream module and, if it is a
// dynamic module, the .so to load.
func nginxStream(bin string) (have bool, module string) {
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return false, ""
	}
	v := string(out)
	if strings.Contains(v, "--with-stream ") || strings.HasSuffix(strings.TrimSpace(v), "--with-stream") {
		return true, ""
	}
	if !strings.Contains(v, "--with-stream=dynamic") {
		return false, ""
	}
	dirs := []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules"}
	if m := regexp.MustCompile(`--modules-path=(\S+)`).FindStringSubmatch(v); m != nil {
		dirs = append([]string{m[1]}, dirs...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "ngx_stream_module.so")
		if _, err := os.Stat(p); err == nil {
			return true, p
		}
	}
	return false, ""
}

// Start implements Target.
func (n *Nginx) Start(ctx context.Context, b Backend) (Endpoints, error) {
	bin, err := exec.LookPath(orDefault(n.Bin, "nginx"))
	if err != nil {
		return Endpoints{}, fmt.Errorf("%w: nginx not installed (%v)", ErrUnavailable, err)
	}
	addrs, err := freeAddrs(4)
	if err != nil {
		return Endpoints{}, err
	}
	e := Endpoints{HTTP1: addrs[0], H2: addrs[1], GRPC: addrs[2], TCP: addrs[3]}
	stream, module := nginxStream(bin)
	if !stream {
		e.TCP = ""
		n.Note = "nginx has no stream module (install libnginx-mod-stream): tcp not proxied"
	}
	if n.dir, err = os.MkdirTemp("", "perf-nginx-"); err != nil {
		return Endpoints{}, fmt.Errorf("target: nginx temp dir: %w", err)
	}
	conf := filepath.Join(n.dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return Endpoints{}, fmt.Errorf("target: nginx config: %w", err)
	}
	err = nginxConf.Execute(f, map[string]any{"Dir": n.dir, "B": b, "E": e, "Stream": stream, "StreamModule": module})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Endpoints{}, fmt.Errorf("target: nginx config: %w", err)
	}
	if n.proc, err = startProcess(bin, []string{"-p", n.dir, "-c", conf, "-e", filepath.Join(n.dir, "error.log")}, nil, n.dir); err != nil {
		return Endpoints{}, err
	}
	if err := n.proc.waitReady(ctx, 5*time.Second, probeProtocol(load.HTTP1, e.HTTP1)); err != nil {
		log, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
		return Endpoints{}, fmt.Errorf("%w; error.log: %s", err, log)
	}
	return e, nil
}

// PID implements Target.
func (n *Nginx) PID() int {
	if n.proc == nil {
		return 0
	}
	return n.proc.pid()
}

// Stop implements Target.
func (n *Nginx) Stop() error {
	var err error
	if n.proc != nil {
		err = n.proc.stop()
	}
	if n.dir != "" {
		_ = os.RemoveAll(n.dir)
	}
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
