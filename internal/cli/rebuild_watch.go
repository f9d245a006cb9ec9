package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// watchRebuild redraws a progress bar for the rebuild onto req's child until
// the rebuild ends (it then leaves the engine's list of running rebuilds) or
// ctx is cancelled. Each poll has its own call timeout; the watch itself has
// none.
func watchRebuild(ctx context.Context, g *globals, c *client, req *enginev1.RebuildRequest) error {
	seen := false
	last := uint32(0)
	for {
		callCtx, cancel := context.WithTimeout(ctx, g.timeout)
		r, err := c.rebuild.GetRebuildProgress(callCtx, req)
		cancel()
		if err != nil {
			if seen && status.Code(err) == codes.NotFound {
				fmt.Fprintf(g.stdout, "\r%s\nrebuild of %s ended (kura rebuild history %s)\n", progressBar(last, 40), req.GetUri(), req.GetNexus())
				return nil
			}
			if seen {
				fmt.Fprintln(g.stdout)
			}
			return err
		}
		seen, last = true, r.GetProgress()
		fmt.Fprintf(g.stdout, "\r%s", progressBar(last, 40))
		select {
		case <-ctx.Done():
			fmt.Fprintln(g.stdout)
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// progressBar renders pct (0..100) as "[#####.....]  50%".
func progressBar(pct uint32, width int) string {
	if pct > 100 {
		pct = 100
	}
	n := int(pct) * width / 100
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat(".", width-n), pct)
}
