package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// shared is an object the engine exports (replica, bdev, nexus).
type shared interface {
	proto.Message
	GetShare() *enginev1.Share
}

// shareCmdSpec describes one share/publish command.
type shareCmdSpec struct {
	use, short, long, example string
	args                      []string
	call                      func(ctx context.Context, c *client, args []string, o *enginev1.ShareOptions) (shared, error)
}

// newShareCmd builds a command that exports an object and prints its URI
// (or the object as JSON with -o json).
func newShareCmd(g *globals, spec shareCmdSpec) *cobra.Command {
	var share shareFlags
	cmd := &cobra.Command{
		Use: spec.use, Short: spec.short, Long: spec.long, Example: spec.example,
		Args: exactArgs(spec.args...),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := share.options()
			if err != nil {
				return err
			}
			return withClient(cmd.Context(), g, func(ctx context.Context, c *client) error {
				obj, err := spec.call(ctx, c, args, o)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(g.stdout, obj)
				}
				fmt.Fprintln(g.stdout, obj.GetShare().GetUri())
				return nil
			})
		},
	}
	share.add(cmd)
	return cmd
}
