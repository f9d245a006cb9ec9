package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newRebuildCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Inspect and control nexus child rebuilds",
	}
	for _, v := range []struct{ verb, short string }{
		{"start", "Start the rebuild of a child added with --norebuild (or of a faulted/offline one)"},
		{"state", "Show the state of the rebuild onto a child"},
		{"stats", "Show the counters of the rebuild onto a child"},
		{"progress", "Show the progress (percent) of the rebuild onto a child"},
		{"pause", "Pause the rebuild onto a child"},
		{"resume", "Resume a paused rebuild"},
		{"stop", "Stop the rebuild onto a child (the child becomes faulted)"},
	} {
		cmd.AddCommand(newRebuildOpCmd(g, v.verb, v.short))
	}
	cmd.AddCommand(newRebuildHistoryCmd(g))
	return cmd
}

func newRebuildOpCmd(g *globals, verb, short string) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   verb + " NEXUS CHILD",
		Short: short,
		Args:  exactArgs("NEXUS", "CHILD"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &enginev1.RebuildRequest{Nexus: args[0], Uri: args[1]}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				switch verb {
				case "state":
					r, err := c.rebuild.GetRebuildState(ctx, req)
					if err != nil {
						return err
					}
					if g.output == "json" {
						return printJSON(g.stdout, r)
					}
					fmt.Fprintln(g.stdout, enumLabel(r.GetState().String(), "REBUILD_STATE_"))
				case "stats":
					r, err := c.rebuild.GetRebuildStats(ctx, req)
					if err != nil {
						return err
					}
					return printJSON(g.stdout, r.GetStats())
				case "progress":
					if watch {
						return watchRebuild(cmd.Context(), g, c, req)
					}
					r, err := c.rebuild.GetRebuildProgress(ctx, req)
					if err != nil {
						return err
					}
					if g.output == "json" {
						return printJSON(g.stdout, r)
					}
					fmt.Fprintf(g.stdout, "%d%%\n", r.GetProgress())
				default:
					var r *enginev1.RebuildControlResponse
					var err error
					switch verb {
					case "start":
						r, err = c.rebuild.StartRebuild(ctx, req)
					case "pause":
						r, err = c.rebuild.PauseRebuild(ctx, req)
					case "resume":
						r, err = c.rebuild.ResumeRebuild(ctx, req)
					case "stop":
						r, err = c.rebuild.StopRebuild(ctx, req)
					}
					if err != nil {
						return err
					}
					if g.output == "json" {
						return printJSON(g.stdout, r)
					}
				}
				return nil
			})
		},
	}
	if verb == "progress" {
		cmd.Flags().BoolVarP(&watch, "watch", "w", false, "draw a progress bar until the rebuild ends")
	}
	return cmd
}

func newRebuildHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history NEXUS",
		Short: "List the finished rebuilds of a nexus",
		Args:  exactArgs("NEXUS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				r, err := c.rebuild.GetRebuildHistory(ctx, &enginev1.GetRebuildHistoryRequest{Nexus: args[0]})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, r)
				}
				if len(r.GetRecords()) == 0 {
					fmt.Fprintln(g.stdout, "No rebuilds have finished")
					return nil
				}
				const row = "%-40s %-10s %-8s %12s %10s\n"
				fmt.Fprintf(g.stdout, row, "CHILD", "STATE", "KIND", "COPIED", "DURATION")
				for _, rec := range r.GetRecords() {
					kind := "full"
					if rec.GetStats().GetPartial() {
						kind = "partial"
					}
					d := time.Duration(rec.GetEndTimeUnixNano() - rec.GetStartTimeUnixNano()).Round(time.Millisecond)
					fmt.Fprintf(g.stdout, row, rec.GetChildUri(), enumLabel(rec.GetState().String(), "REBUILD_STATE_"), kind,
						humanSize(rec.GetStats().GetBlocksTransferred()*uint64(rec.GetStats().GetBlockSize())), d)
				}
				return nil
			})
		},
	}
}
