package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newReplicaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replica",
		Short: "Manage replicas (logical volumes in a pool)",
	}
	cmd.AddCommand(newReplicaCreateCmd(g), newReplicaDestroyCmd(g), newReplicaListCmd(g),
		newReplicaResizeCmd(g), newReplicaShareCmd(g), newReplicaUnshareCmd(g))
	return cmd
}

// shareFlags are the flags of every share command.
type shareFlags struct {
	protocol     string
	allowedHosts []string
	allowAny     bool
}

func (s *shareFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.protocol, "protocol", "nvmf", "nvmf (NVMe/TCP) or nbd")
	cmd.Flags().StringArrayVar(&s.allowedHosts, "allowed-host", nil, "host allowed to connect, repeatable: a host NQN for nvmf, an IP or CIDR for nbd (nvmf needs this or --allow-any-host; nbd default: any client)")
	cmd.Flags().BoolVar(&s.allowAny, "allow-any-host", false, "let any host connect (nvmf: must be asked for explicitly)")
}

func (s *shareFlags) options() (*enginev1.ShareOptions, error) {
	o := &enginev1.ShareOptions{AllowedHosts: s.allowedHosts, AllowAnyHost: s.allowAny}
	switch s.protocol {
	case "nvmf", "nvme", "nvmf-tcp":
		o.Protocol = enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF
	case "nbd":
		o.Protocol = enginev1.ShareProtocol_SHARE_PROTOCOL_NBD
	default:
		return nil, usageError{fmt.Errorf("--protocol %q: want nvmf or nbd", s.protocol)}
	}
	return o, nil
}

func newReplicaCreateCmd(g *globals) *cobra.Command {
	var (
		size, uuid string
		thin       bool
		share      shareFlags
		doShare    bool
	)
	cmd := &cobra.Command{
		Use:   "create POOL NAME --size=SIZE",
		Short: "Create a replica in a pool",
		Long: `Create replica NAME in POOL. --size is in MiB when given as a bare number
(--size=10 is 10 MiB), or with a unit: 512MiB, 10GiB.
Thick replicas get all their space now; --thin replicas on first write.
Repeating the command with the same arguments succeeds without change.`,
		Example: "  kura replica create tpool replica1 --size=10\n  kura replica create tpool replica2 --size=1000 --thin\n  kura replica create tpool vol1 --size=10GiB --thin --share --protocol nbd",
		Args:    exactArgs("POOL", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if size == "" {
				return usageError{fmt.Errorf("--size is required (MiB, or with a unit such as 10GiB)")}
			}
			sz, err := parseSize(size, 1<<20)
			if err != nil {
				return usageError{fmt.Errorf("--size: %w", err)}
			}
			req := &enginev1.CreateReplicaRequest{Pool: args[0], Name: args[1], Size: sz, Thin: thin, Uuid: uuid}
			if doShare || cmd.Flags().Changed("protocol") {
				if req.Share, err = share.options(); err != nil {
					return err
				}
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.replica.CreateReplica(ctx, req)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetReplica())
				}
				if sh := resp.GetReplica().GetShare(); sh != nil {
					fmt.Fprintln(g.stdout, sh.GetUri())
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "size in MiB, or with a unit (10GiB)")
	cmd.Flags().BoolVar(&thin, "thin", false, "thin provisioning: allocate space on first write")
	cmd.Flags().StringVar(&uuid, "uuid", "", "replica UUID (default: generated)")
	cmd.Flags().BoolVar(&doShare, "share", false, "share the replica right away (see --protocol)")
	share.add(cmd)
	return cmd
}

func newReplicaDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy POOL NAME",
		Short: "Destroy a replica (unsharing it first)",
		Args:  exactArgs("POOL", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.replica.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: args[0], Name: args[1]})
				return err
			})
		},
	}
}

func newReplicaListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list [POOL]",
		Aliases: []string{"ls"},
		Short:   "List replicas (of every pool, or of POOL)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &enginev1.ListReplicasRequest{}
			if len(args) == 1 {
				req.Pool = args[0]
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.replica.ListReplicas(ctx, req)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp)
				}
				printReplicas(g, resp.GetReplicas())
				return nil
			})
		},
	}
}

// The header's THIN column is one narrower than the rows', as in the
// reference client; the extra space before ALLOCATED realigns the rest.
const (
	replicaHeader = "%-20s %-20s %-4s %14s  %12s"
	replicaRow    = "%-20s %-20s %-5s %14s %12s"
	shareCols     = "   %-5s %s"
)

func printReplicas(g *globals, reps []*enginev1.Replica) {
	if len(reps) == 0 {
		fmt.Fprintln(g.stdout, "No replicas have been created")
		return
	}
	shared := false
	for _, r := range reps {
		if r.GetShare() != nil {
			shared = true
		}
	}
	fmt.Fprintf(g.stdout, replicaHeader, "POOL", "NAME", "THIN", "SIZE", "ALLOCATED")
	if shared {
		fmt.Fprintf(g.stdout, shareCols, "SHARE", "URI")
	}
	fmt.Fprintln(g.stdout)
	for _, r := range reps {
		fmt.Fprintf(g.stdout, replicaRow, r.GetPool(), r.GetName(), strconv.FormatBool(r.GetThin()), humanSize(r.GetSize()), humanSize(r.GetAllocated()))
		if shared {
			proto, uri := "-", "-"
			if sh := r.GetShare(); sh != nil {
				proto, uri = protoLabel(sh.GetProtocol()), sh.GetUri()
			}
			fmt.Fprintf(g.stdout, shareCols, proto, uri)
		}
		fmt.Fprintln(g.stdout)
	}
}

func protoLabel(p enginev1.ShareProtocol) string {
	switch p {
	case enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF:
		return "nvmf"
	case enginev1.ShareProtocol_SHARE_PROTOCOL_NBD:
		return "nbd"
	}
	return "-"
}

func newReplicaResizeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "resize POOL NAME SIZE",
		Short:   "Grow a replica (SIZE in MiB, or with a unit)",
		Example: "  kura replica resize tpool replica1 20\n  kura replica resize tpool replica1 2GiB",
		Args:    exactArgs("POOL", "NAME", "SIZE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sz, err := parseSize(args[2], 1<<20)
			if err != nil {
				return usageError{err}
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.replica.ResizeReplica(ctx, &enginev1.ResizeReplicaRequest{Pool: args[0], Name: args[1], Size: sz})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetReplica())
				}
				return nil
			})
		},
	}
}

func newReplicaShareCmd(g *globals) *cobra.Command {
	return newShareCmd(g, shareCmdSpec{
		use:   "share POOL NAME",
		short: "Export a replica over NVMe/TCP or NBD and print its URI",
		long: `Export a replica and print the URI clients connect to.
The share and its allow-list survive an engine restart. An NVMe/TCP share
needs --allowed-host (repeatable) or an explicit --allow-any-host; an NBD
share with no --allowed-host accepts any client that reaches its address.`,
		example: "  kura replica share tpool replica1 --allowed-host nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427\n" +
			"  kura replica share tpool replica1 --allow-any-host\n  kura replica share tpool replica1 --protocol nbd",
		args: []string{"POOL", "NAME"},
		call: func(ctx context.Context, c *client, args []string, o *enginev1.ShareOptions) (shared, error) {
			resp, err := c.replica.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: args[0], Name: args[1], Options: o})
			return resp.GetReplica(), err
		},
	})
}

func newReplicaUnshareCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unshare POOL NAME",
		Short: "Stop exporting a replica",
		Args:  exactArgs("POOL", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				_, err := c.replica.UnshareReplica(ctx, &enginev1.UnshareReplicaRequest{Pool: args[0], Name: args[1]})
				return err
			})
		},
	}
}
