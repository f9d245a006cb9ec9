package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func newHostCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Information about the engine's node",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "info",
		Short: "Show node name, version, endpoints and block devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				h, err := c.host.GetHostInfo(ctx, &enginev1.GetHostInfoRequest{})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, h)
				}
				printHost(g, h)
				return nil
			})
		},
	})
	return cmd
}

func printHost(g *globals, h *enginev1.GetHostInfoResponse) {
	w := g.stdout
	fmt.Fprintf(w, "Node:     %s (host %s)\n", h.GetNodeName(), h.GetHostname())
	fmt.Fprintf(w, "Version:  %s\n", h.GetVersion())
	fmt.Fprintf(w, "Uptime:   %s\n", time.Duration(h.GetUptimeSeconds())*time.Second)
	fmt.Fprintf(w, "Kernel:   %s, %d CPUs, %s memory\n", h.GetKernel(), h.GetCpuCount(), humanSize(h.GetMemoryBytes()))
	fmt.Fprintf(w, "gRPC:     %s\n", h.GetGrpcEndpoint())
	fmt.Fprintf(w, "NVMe/TCP: %s\n", h.GetNvmfEndpoint())
	fmt.Fprintf(w, "NBD:      %s\n", h.GetNbdEndpoint())
	fmt.Fprintln(w)
	const row = "%-12s %12s %-4s %-24s %s\n"
	fmt.Fprintf(w, row, "DEVICE", "SIZE", "ROT", "MODEL", "IN USE BY")
	for _, d := range h.GetBlockDevices() {
		rot, use := "no", d.GetInUseBy()
		if d.GetRotational() {
			rot = "yes"
		}
		if use == "" {
			use = "-"
		}
		model := d.GetModel()
		if model == "" {
			model = "-"
		}
		fmt.Fprintf(w, row, d.GetPath(), humanSize(d.GetSize()), rot, model, use)
	}
}
