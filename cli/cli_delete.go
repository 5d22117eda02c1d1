package cli

import (
	"context"
	"fmt"

	"github.com/refkeeper/refkeeper/client"
)

const deleteUsage = `refkeeper delete PROJECT PIPELINE [flags]

Deletes the pipeline's ref now, whatever its state. Exit status 3 when
there is neither pin nor ref.`

func runDelete(ctx context.Context, c *cli, args []string) int {
	return runAPICommand(ctx, c, args, deleteUsage, 2, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		id, err := positiveID("PIPELINE", pos[1])
		if err != nil {
			return err
		}
		if err := cl.DeletePin(ctx, pos[0], id); err != nil {
			return err
		}
		if af.json {
			return c.printJSON(map[string]any{"project": pos[0], "pipeline_id": id, "deleted": true})
		}
		_, err = fmt.Fprintf(c.stdout, "deleted refs/pipelines/%d of %s\n", id, pos[0])
		return err
	})
}
