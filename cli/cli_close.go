package cli

import (
	"context"

	"github.com/refkeeper/refkeeper/client"
)

const closeUsage = `refkeeper close PROJECT IID [flags]

Says merge request IID was merged or closed: its finished pins expire now,
its pinned ones as soon as they are finished. Prints its pins.`

func runClose(ctx context.Context, c *cli, args []string) int {
	return runAPICommand(ctx, c, args, closeUsage, 2, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		iid, err := positiveID("IID", pos[1])
		if err != nil {
			return err
		}
		pins, err := cl.CloseMergeRequest(ctx, pos[0], iid)
		if err != nil {
			return err
		}
		if af.json {
			return c.printJSON(map[string]any{"pins": pins})
		}
		return c.printPins(pins)
	})
}
