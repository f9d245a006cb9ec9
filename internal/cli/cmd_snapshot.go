package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Copy-on-write snapshots of replicas and nexuses, and clones of snapshots",
	}
	var uuid string
	create := &cobra.Command{
		Use:     "create POOL REPLICA NAME",
		Short:   "Snapshot a replica (O(1), copy-on-write)",
		Example: "  kura snapshot create tpool replica1 snap1",
		Args:    exactArgs("POOL", "REPLICA", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				r, err := c.snap.CreateSnapshot(ctx, &enginev1.CreateSnapshotRequest{Pool: args[0], Replica: args[1], Name: args[2], Uuid: uuid})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, r.GetSnapshot())
				}
				return nil
			})
		},
	}
	create.Flags().StringVar(&uuid, "uuid", "", "snapshot UUID (default: generated)")
	var cloneUUID string
	clone := &cobra.Command{
		Use:     "clone POOL SNAPSHOT CLONE",
		Short:   "Create a writable replica from a snapshot",
		Example: "  kura snapshot clone tpool snap1 replica1-clone",
		Args:    exactArgs("POOL", "SNAPSHOT", "CLONE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				r, err := c.snap.CloneSnapshot(ctx, &enginev1.CloneSnapshotRequest{Pool: args[0], Snapshot: args[1], CloneName: args[2], Uuid: cloneUUID})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, r.GetReplica())
				}
				return nil
			})
		},
	}
	clone.Flags().StringVar(&cloneUUID, "uuid", "", "clone UUID (default: generated)")
	var force bool
	destroy := &cobra.Command{
		Use:   "destroy POOL NAME",
		Short: "Destroy a snapshot (--force also when clones depend on it)",
		Args:  exactArgs("POOL", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.snap.DestroySnapshot(ctx, &enginev1.DestroySnapshotRequest{Pool: args[0], Name: args[1], Force: force})
				return err
			})
		},
	}
	destroy.Flags().BoolVar(&force, "force", false, "give dependent clones their own copy of the data first")
	list := &cobra.Command{
		Use:     "list [POOL]",
		Aliases: []string{"ls"},
		Short:   "List snapshots",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &enginev1.ListSnapshotsRequest{}
			if len(args) == 1 {
				req.Pool = args[0]
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				r, err := c.snap.ListSnapshots(ctx, req)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, r)
				}
				if len(r.GetSnapshots()) == 0 {
					fmt.Fprintln(g.stdout, "No snapshots have been created")
					return nil
				}
				const row = "%-20s %-20s %-20s %-20s %12s %12s %12s   %s\n"
				fmt.Fprintf(g.stdout, row, "POOL", "NAME", "SOURCE", "CREATED", "SIZE", "REFERENCED", "EXCLUSIVE", "CLONES")
				for _, s := range r.GetSnapshots() {
					clones := strings.Join(s.GetClones(), ",")
					if clones == "" {
						clones = "-"
					}
					source := s.GetSource()
					if source == "" {
						source = "-" // the replica was destroyed; the snapshot stays
					}
					created := time.Unix(0, s.GetCreateTimeUnixNano()).UTC().Format("2006-01-02 15:04:05")
					fmt.Fprintf(g.stdout, row, s.GetPool(), s.GetName(), source, created, humanSize(s.GetSize()),
						humanSize(s.GetReferenced()), humanSize(s.GetAllocated()), clones)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, clone, destroy, list, newNexusSnapshotCmd(g, "nexus"))
	return cmd
}

// newNexusSnapshotCmd is "kura snapshot nexus" and "kura nexus snapshot".
func newNexusSnapshotCmd(g *globals, use string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " NEXUS NAME",
		Short: "Snapshot every replica of a nexus at one point in time (NAME-REPLICA)",
		Args:  exactArgs("NEXUS", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				r, err := c.snap.CreateNexusSnapshot(ctx, &enginev1.CreateNexusSnapshotRequest{Nexus: args[0], Name: args[1]})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, r)
				}
				for _, s := range r.GetSnapshots() {
					fmt.Fprintf(g.stdout, "%s/%s\n", s.GetPool(), s.GetName())
				}
				return nil
			})
		},
	}
}
