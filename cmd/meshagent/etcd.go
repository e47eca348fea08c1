package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

func init() {
	register(&command{name: "etcd", summary: "serve the store alone through the etcd v3 emulation", run: runEtcd})
}

// apisixDirs are the directories APISIX's CLI creates placeholders for
// ("<prefix>/<dir>/" = "init_dir", reference apisix.md §3.7).
// TODO(integrator): replace with apisix.InitDirs once package apisix
// exports it.
var apisixDirs = []string{
	"routes", "upstreams", "services", "ssls", "plugin_configs", "global_rules",
	"consumers", "consumer_groups", "protos", "plugin_metadata", "secrets",
	"stream_routes", "plugins",
}

func runEtcd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:2379", "address serving etcd gRPC and the HTTP/JSON gateway")
	dataFile := fs.String("data-file", "", "file persisting data and revision across restarts (empty: memory only)")
	user := fs.String("user", "", "user name required by /v3/auth/authenticate (enables authentication; needs --password-file)")
	passwordFile := fs.String("password-file", "", "file holding the password of --user (first line)")
	prefix := fs.String("prefix", "/apisix", "APISIX key prefix under which init_dir placeholders are written (empty: none)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "meshagent etcd: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	password := ""
	switch {
	case *user != "" && *passwordFile == "":
		return errors.New("--user needs --password-file")
	case *user == "" && *passwordFile != "":
		return errors.New("--password-file needs --user")
	case *user != "":
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
		password = strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")
		if password == "" {
			return fmt.Errorf("--password-file %s: the password is empty", *passwordFile)
		}
	}
	if *prefix != "" && (!strings.HasPrefix(*prefix, "/") || strings.HasSuffix(*prefix, "/")) {
		return fmt.Errorf("--prefix %q: must start with / and not end with /", *prefix)
	}

	// TODO(integrator): Decoder: apisix.Decode once package apisix exports it.
	st, err := store.New(store.Options{DataFile: *dataFile, Logger: log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			log.Error("closing store", "err", cerr)
		}
	}()
	if *prefix != "" {
		if err := writeInitDirs(ctx, st, *prefix, apisixDirs); err != nil {
			return err
		}
	}
	srv, err := etcdcompat.New(etcdcompat.Options{Store: st, Logger: log.With("component", "etcd"), User: *user, Password: password})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("meshagent etcd ready", "listen", l.Addr().String(), "data_file", *dataFile, "revision", st.Rev())
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		_ = srv.Close()
		select {
		case <-errc:
		case <-time.After(5 * time.Second):
		}
		return nil
	case err := <-errc:
		return err
	}
}

// writeInitDirs creates "<prefix>/<dir>/" = "init_dir" for every dir that
// has no placeholder yet, as APISIX's CLI does on start.
func writeInitDirs(ctx context.Context, st store.Store, prefix string, dirs []string) error {
	for _, d := range dirs {
		key := []byte(prefix + "/" + d + "/")
		_, err := st.Txn(ctx, &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: key, Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: []byte("init_dir")}}}},
		})
		if err != nil {
			return fmt.Errorf("init_dir %s: %w", key, err)
		}
	}
	return nil
}
