package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newBdevCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bdev",
		Short: "Open block devices by URI in the engine, and share them",
		Long: `A bdev is a block device the engine keeps open, named by URI:
  aio:///path?blk_size=512|4096   file or block device (a bare /path means aio)
  uring:///path                   the same through io_uring
  malloc:///NAME?size_mb=64       memory
  nvmf://host:8420/NQN            a remote NVMe/TCP namespace`,
	}
	cmd.AddCommand(newBdevCreateCmd(g), newBdevDestroyCmd(g), newBdevListCmd(g), newBdevShareCmd(g), newBdevUnshareCmd(g))
	return cmd
}

func newBdevCreateCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "create URI",
		Short:   "Open a block device by URI and print its name",
		Example: "  kura bdev create malloc:///m0?size_mb=64\n  kura bdev create aio:///tmp/disk.img?blk_size=4096 --name disk0",
		Args:    exactArgs("URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: args[0], Name: name})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetBdev())
				}
				fmt.Fprintln(g.stdout, resp.GetBdev().GetName())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "bdev name (default: last element of the URI path)")
	return cmd
}

func newBdevDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy NAME|URI",
		Short: "Close a bdev (unsharing it first)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.bdev.DestroyBdev(ctx, &enginev1.DestroyBdevRequest{Name: args[0]})
				return err
			})
		},
	}
}

const bdevRow = "%-20s %12s %6s %-5s %s\n"

func newBdevListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List bdevs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.bdev.ListBdevs(ctx, &enginev1.ListBdevsRequest{})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp)
				}
				if len(resp.GetBdevs()) == 0 {
					fmt.Fprintln(g.stdout, "No bdevs have been created")
					return nil
				}
				fmt.Fprintf(g.stdout, bdevRow, "NAME", "SIZE", "BLKSZ", "SHARE", "URI")
				for _, b := range resp.GetBdevs() {
					share, uri := "-", b.GetUri()
					if sh := b.GetShare(); sh != nil {
						share, uri = protoLabel(sh.GetProtocol()), sh.GetUri()
					}
					fmt.Fprintf(g.stdout, bdevRow, b.GetName(), humanSize(b.GetSize()), fmt.Sprint(b.GetBlockSize()), share, uri)
				}
				return nil
			})
		},
	}
}

func newBdevShareCmd(g *globals) *cobra.Command {
	return newShareCmd(g, shareCmdSpec{
		use:   "share NAME",
		short: "Export a bdev over NVMe/TCP or NBD and print its URI",
		args:  []string{"NAME"},
		call: func(ctx context.Context, c *client, args []string, o *enginev1.ShareOptions) (shared, error) {
			resp, err := c.bdev.ShareBdev(ctx, &enginev1.ShareBdevRequest{Name: args[0], Options: o})
			return resp.GetBdev(), err
		},
	})
}

func newBdevUnshareCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unshare NAME",
		Short: "Stop exporting a bdev",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.bdev.UnshareBdev(ctx, &enginev1.UnshareBdevRequest{Name: args[0]})
				return err
			})
		},
	}
}
