package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newPoolCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Manage storage pools (a disk turned into a store of replicas)",
	}
	cmd.AddCommand(newPoolCreateCmd(g), newPoolDestroyCmd(g), newPoolExportCmd(g), newPoolImportCmd(g), newPoolListCmd(g))
	return cmd
}

func newPoolCreateCmd(g *globals) *cobra.Command {
	var clusterSize, uuid string
	cmd := &cobra.Command{
		Use:   "create NAME DISK",
		Short: "Create a pool on a disk",
		Long: `Create a pool named NAME on DISK, writing a new pool label and metadata.

DISK is a block device or file path (/dev/loop8, /dev/sdb, /var/lib/kura/disk.img)
or a device URI (aio:///dev/sdb?blk_size=4096, uring:///dev/nvme0n1).
A disk that already holds a pool or is in use is refused and left untouched.
Repeating the command with the same arguments succeeds without change.`,
		Example: "  kura pool create tpool /dev/loop8\n  kura pool create fast uring:///dev/nvme1n1 --cluster-size 1MiB",
		Args:    exactArgs("NAME", "DISK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var cs uint64
			if clusterSize != "" {
				v, err := parseSize(clusterSize, 1)
				if err != nil {
					return usageError{fmt.Errorf("--cluster-size: %w", err)}
				}
				cs = v
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: args[0], Disks: []string{args[1]}, ClusterSize: cs, Uuid: uuid})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetPool())
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&clusterSize, "cluster-size", "", "allocation unit, e.g. 4MiB (default: the pool default, 4 MiB)")
	cmd.Flags().StringVar(&uuid, "uuid", "", "pool UUID (default: generated)")
	return cmd
}

func newPoolDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy NAME",
		Short: "Destroy a pool: delete its replicas and wipe its label",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.pool.DestroyPool(ctx, &enginev1.DestroyPoolRequest{Name: args[0]})
				return err
			})
		},
	}
}

func newPoolExportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME",
		Short: "Close a pool cleanly and forget it, so its disk can move to another engine",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.pool.ExportPool(ctx, &enginev1.ExportPoolRequest{Name: args[0]})
				return err
			})
		},
	}
}

func newPoolImportCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "import DISK",
		Short:   "Import the pool on a disk (after an export, or from another engine)",
		Example: "  kura pool import /dev/loop8",
		Args:    exactArgs("DISK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{args[0]}, Name: name})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetPool())
				}
				fmt.Fprintf(g.stdout, "imported pool %s\n", resp.GetPool().GetName())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "fail unless the pool on the disk has this name")
	return cmd
}

func newPoolListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list [NAME]",
		Aliases: []string{"ls"},
		Short:   "List pools",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &enginev1.ListPoolsRequest{}
			if len(args) == 1 {
				req.Name = args[0]
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.pool.ListPools(ctx, req)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp)
				}
				printPools(g, resp.GetPools())
				return nil
			})
		},
	}
}

// Table layouts follow the reference client's.
const poolRow = "%-20s %-8s %12s %12s   %s\n"

func printPools(g *globals, pools []*enginev1.Pool) {
	if len(pools) == 0 {
		fmt.Fprintln(g.stdout, "No pools have been created")
		return
	}
	fmt.Fprintf(g.stdout, poolRow, "NAME", "STATE", "CAPACITY", "USED", "DISKS")
	for _, p := range pools {
		fmt.Fprintf(g.stdout, poolRow, p.GetName(), poolState(p.GetState()), humanSize(p.GetCapacity()), humanSize(p.GetUsed()), strings.Join(p.GetDisks(), ","))
	}
}

func poolState(s enginev1.PoolState) string {
	switch s {
	case enginev1.PoolState_POOL_STATE_ONLINE:
		return "online"
	case enginev1.PoolState_POOL_STATE_DEGRADED:
		return "degraded"
	case enginev1.PoolState_POOL_STATE_FAULTED:
		return "faulted"
	}
	return "unknown"
}
