package cli

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// client is a connection to an engine.
type client struct {
	conn    *grpc.ClientConn
	pool    enginev1.PoolServiceClient
	replica enginev1.ReplicaServiceClient
	bdev    enginev1.BdevServiceClient
	host    enginev1.HostServiceClient
	nexus   enginev1.NexusServiceClient
	rebuild enginev1.RebuildServiceClient
	snap    enginev1.SnapshotServiceClient
}

func dial(g *globals) (*client, error) {
	conn, err := grpc.NewClient(g.engine, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("engine address %q: %w", g.engine, err)
	}
	return &client{
		conn:    conn,
		pool:    enginev1.NewPoolServiceClient(conn),
		replica: enginev1.NewReplicaServiceClient(conn),
		bdev:    enginev1.NewBdevServiceClient(conn),
		host:    enginev1.NewHostServiceClient(conn),
		nexus:   enginev1.NewNexusServiceClient(conn),
		rebuild: enginev1.NewRebuildServiceClient(conn),
		snap:    enginev1.NewSnapshotServiceClient(conn),
	}, nil
}

// withClient dials the engine, runs f with a per-call timeout and closes
// the connection. A failure to reach the engine is reported as such.
func withClient(ctx context.Context, g *globals, f func(ctx context.Context, c *client) error) error {
	c, err := dial(g)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	err = f(ctx, c)
	if err != nil && status.Code(err) == codes.Unavailable {
		if st := c.conn.GetState(); st == connectivity.TransientFailure || st == connectivity.Idle || st == connectivity.Connecting {
			return unreachableError{addr: g.engine, err: err}
		}
	}
	return err
}

// unreachableError is returned when no engine answers at the address.
type unreachableError struct {
	addr string
	err  error
}

func (u unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the engine at %s (is \"kura engine\" or \"kura up\" running? set --engine or KURA_ENGINE)", u.addr)
}
func (u unreachableError) Unwrap() error { return u.err }

// describe turns an error into the one line printed after "kura: ".
func describe(err error, g *globals) string {
	var ue unreachableError
	if errors.As(err, &ue) {
		return ue.Error()
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.DeadlineExceeded:
			return fmt.Sprintf("the engine at %s did not answer within %s (--timeout)", g.engine, g.timeout)
		}
		return st.Message()
	}
	return err.Error()
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "devel"
	}
	return bi.Main.Version
}
