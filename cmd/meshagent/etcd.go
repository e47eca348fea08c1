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
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

func init() {
	register(&command{name: "etcd", summary: "serve the store alone through the etcd v3 emulation", run: runEtcd})
}

func runEtcd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:2379", "address serving etcd gRPC and the HTTP/JSON gateway")
	dataFile := fs.String("data-file", "", "file persisting data and revision across restarts (empty: memory only)")
	user := fs.String("user", "", "user name required by /v3/auth/authenticate (enables authentication; needs --password-file)")
	passwordFile := fs.String("password-file", "", "file holding the password of --user (first line)")
	prefix := fs.String("prefix", apisix.DefaultPrefix, "APISIX key prefix under which init_dir placeholders are written (empty: none)")
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

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	defer l.Close() // Serve owns it once running; a second Close is harmless
	decodePrefix := *prefix
	if decodePrefix == "" {
		decodePrefix = apisix.DefaultPrefix
	}
	st, err := store.New(store.Options{Decoder: apisix.NewDecoder(decodePrefix), DataFile: *dataFile,
		Logger: log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			log.Error("closing store", "err", cerr)
		}
	}()
	if *prefix != "" {
		if err := writeInitDirs(ctx, st, apisix.InitDirs(*prefix)); err != nil {
			return err
		}
	}
	srv, err := etcdcompat.New(etcdcompat.Options{Store: st, Logger: log.With("component", "etcd"), User: *user, Password: password})
	if err != nil {
		return err
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

// writeInitDirs creates each placeholder key ("<prefix>/<dir>/" =
// "init_dir") that does not exist yet, as APISIX's CLI does on start.
func writeInitDirs(ctx context.Context, st store.Store, keys []string) error {
	for _, k := range keys {
		key := []byte(k)
		_, err := st.Txn(ctx, &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: key, Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: []byte(apisix.InitDirValue)}}}},
		})
		if err != nil {
			return fmt.Errorf("init_dir %s: %w", key, err)
		}
	}
	return nil
}
