package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newNexusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nexus",
		Short: "Manage nexuses (volumes mirrored onto replicas or other devices)",
		Long: `A nexus is a volume that mirrors every write onto its children (device URIs:
bdev:///REPLICA for a replica of this engine, nvmf://host:port/NQN for a remote
one, aio:///path, ...) and reads from the best healthy one. A child that fails
is faulted and the nexus keeps going; a child added or brought back online is
rebuilt while the volume stays in use.`,
	}
	cmd.AddCommand(newNexusCreateCmd(g), newNexusSimpleCmd(g, "destroy", "Unpublish, shut down and forget a nexus"),
		newNexusSimpleCmd(g, "shutdown", "Stop I/O on a nexus and record a clean shutdown"),
		newNexusListCmd(g), newNexusChildrenCmd(g), newNexusPublishCmd(g),
		newNexusSimpleCmd(g, "unpublish", "Stop exporting a nexus"),
		newNexusChildGroup(g), newNexusSnapshotCmd(g, "snapshot"))
	// The child verbs also work without the "child" word: kura nexus fault vol1 URI.
	cmd.AddCommand(newNexusChildCmds(g)...)
	return cmd
}

// newNexusChildCmds returns the child verbs (add, remove, fault, offline, online).
func newNexusChildCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newNexusChildCmd(g, "add", "Add a child and rebuild it (--norebuild: add it out of sync, rebuild later)"),
		newNexusChildCmd(g, "remove", "Remove a child (never the last healthy one)"),
		newNexusChildCmd(g, "fault", "Fault a child (it is no longer read or written)"),
		newNexusChildCmd(g, "offline", "Take a child offline; writes it misses are logged"),
		newNexusChildCmd(g, "online", "Bring a faulted or offline child back and rebuild it"),
	}
}

// newNexusChildGroup is "kura nexus child add|remove|fault|offline|online".
func newNexusChildGroup(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "child",
		Short: "Add, remove, fault, offline or online a child of a nexus",
		Example: "  kura nexus child add vol1 bdev:///r3\n  kura nexus child offline vol1 bdev:///r2\n" +
			"  kura nexus child online vol1 bdev:///r2    # partial rebuild of what it missed\n" +
			"  kura nexus child add vol1 bdev:///r4 --norebuild && kura rebuild start vol1 bdev:///r4",
	}
	cmd.AddCommand(newNexusChildCmds(g)...)
	return cmd
}

func newNexusCreateCmd(g *globals) *cobra.Command {
	var size, uuid string
	var writeIntent bool
	cmd := &cobra.Command{
		Use:     "create NAME CHILD...",
		Short:   "Create a nexus over child device URIs",
		Example: "  kura nexus create vol1 bdev:///replica1 nvmf://10.0.0.2:8420/nqn.2019-05.io.kura:replica1\n  kura nexus create vol2 bdev:///r1 bdev:///r2 --size 1GiB",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{fmt.Errorf("%s needs a NAME and at least one CHILD URI", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var sz uint64
			if size != "" {
				v, err := parseSize(size, 1<<20)
				if err != nil {
					return usageError{fmt.Errorf("--size: %w", err)}
				}
				sz = v
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: args[0], Uuid: uuid, Size: sz, Children: args[1:], WriteIntent: writeIntent})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp.GetNexus())
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "size in MiB or with a unit (default: the smallest child)")
	cmd.Flags().StringVar(&uuid, "uuid", "", "nexus UUID (default: the name)")
	cmd.Flags().BoolVar(&writeIntent, "write-intent", false, "keep a write-intent log: after a crash, resync only recently written segments")
	return cmd
}

func newNexusSimpleCmd(g *globals, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				var err error
				switch verb {
				case "destroy":
					_, err = c.nexus.DestroyNexus(ctx, &enginev1.DestroyNexusRequest{Name: args[0]})
				case "shutdown":
					_, err = c.nexus.ShutdownNexus(ctx, &enginev1.ShutdownNexusRequest{Name: args[0]})
				case "unpublish":
					_, err = c.nexus.UnpublishNexus(ctx, &enginev1.UnpublishNexusRequest{Name: args[0]})
				}
				return err
			})
		},
	}
}

const nexusRow = "%-20s %12s %-10s %8s   %s\n"

func newNexusListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List nexuses",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, resp)
				}
				if len(resp.GetNexuses()) == 0 {
					fmt.Fprintln(g.stdout, "No nexuses have been created")
					return nil
				}
				fmt.Fprintf(g.stdout, nexusRow, "NAME", "SIZE", "STATE", "CHILDREN", "URI")
				for _, n := range resp.GetNexuses() {
					uri := "-"
					if sh := n.GetShare(); sh != nil {
						uri = sh.GetUri()
					}
					fmt.Fprintf(g.stdout, nexusRow, n.GetName(), humanSize(n.GetSize()), enumLabel(n.GetState().String(), "NEXUS_STATE_"),
						fmt.Sprint(len(n.GetChildren())), uri)
					for _, ch := range n.GetChildren() {
						state := enumLabel(ch.GetState().String(), "CHILD_STATE_")
						if ch.GetState() == enginev1.ChildState_CHILD_STATE_REBUILDING {
							state += fmt.Sprintf(" %d%%", ch.GetRebuildProgress())
						}
						if r := ch.GetReason(); r != "" {
							state += " (" + r + ")"
						}
						fmt.Fprintf(g.stdout, "  - %-46s %s\n", ch.GetUri(), state)
					}
				}
				return nil
			})
		},
	}
}

func newNexusChildrenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "children NAME",
		Short: "List the children of a nexus with their state and rebuild progress",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				resp, err := c.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: args[0]})
				if err != nil {
					return err
				}
				n := resp.GetNexuses()[0]
				if g.output == "json" {
					return printJSON(g.stdout, n)
				}
				const row = "%-50s %-11s %8s   %s\n"
				fmt.Fprintf(g.stdout, row, "CHILD", "STATE", "REBUILD", "REASON")
				for _, ch := range n.GetChildren() {
					rb, reason := "-", ch.GetReason()
					if ch.GetState() == enginev1.ChildState_CHILD_STATE_REBUILDING {
						rb = fmt.Sprintf("%d%%", ch.GetRebuildProgress())
					}
					if reason == "" {
						reason = "-"
					}
					fmt.Fprintf(g.stdout, row, ch.GetUri(), enumLabel(ch.GetState().String(), "CHILD_STATE_"), rb, reason)
				}
				return nil
			})
		},
	}
}

func newNexusPublishCmd(g *globals) *cobra.Command {
	return newShareCmd(g, shareCmdSpec{
		use:   "publish NAME",
		short: "Export a nexus over NVMe/TCP or NBD and print its URI",
		example: "  kura nexus publish vol1 --allowed-host nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427\n" +
			"  kura nexus publish vol1 --protocol nbd",
		args: []string{"NAME"},
		call: func(ctx context.Context, c *client, args []string, o *enginev1.ShareOptions) (shared, error) {
			resp, err := c.nexus.PublishNexus(ctx, &enginev1.PublishNexusRequest{Name: args[0], Options: o})
			return resp.GetNexus(), err
		},
	})
}

func newNexusChildCmd(g *globals, verb, short string) *cobra.Command {
	var norebuild bool
	cmd := &cobra.Command{
		Use:   verb + " NAME CHILD",
		Short: short,
		Args:  exactArgs("NAME", "CHILD"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				req := &enginev1.ChildRequest{Nexus: args[0], Uri: args[1]}
				var err error
				switch verb {
				case "add":
					_, err = c.nexus.AddChild(ctx, &enginev1.AddChildRequest{Nexus: args[0], Uri: args[1], Norebuild: norebuild})
				case "remove":
					_, err = c.nexus.RemoveChild(ctx, &enginev1.RemoveChildRequest{Nexus: args[0], Uri: args[1]})
				case "fault":
					_, err = c.nexus.FaultChild(ctx, req)
				case "offline":
					_, err = c.nexus.OfflineChild(ctx, req)
				case "online":
					_, err = c.nexus.OnlineChild(ctx, req)
				}
				return err
			})
		},
	}
	if verb == "add" {
		cmd.Long = `Add a child to a nexus. By default a full rebuild onto it starts at once and
it becomes online when the rebuild completes.

With --norebuild the child is added out of sync: it gets no reads and no
writes, does not count as healthy (the nexus is degraded), and is recorded so
in the nexus info, so it stays out of sync across an engine restart. Start its
(full) rebuild later with "kura rebuild start NEXUS CHILD".`
		cmd.Flags().BoolVar(&norebuild, "norebuild", false, "add the child out of sync without starting a rebuild (start it with kura rebuild start)")
	}
	return cmd
}

// enumLabel turns NEXUS_STATE_ONLINE into "online" and
// CHILD_STATE_OUT_OF_SYNC into "out-of-sync".
func enumLabel(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}
