package cli

import (
	"context"

	"github.com/refkeeper/refkeeper/client"
)

const getUsage = `refkeeper get PROJECT PIPELINE [flags]

Prints the pin. Exit status 3 when it is gone: deleted (it is still
printed), or no pin at all.`

func runGet(ctx context.Context, c *cli, args []string) int {
	return runAPICommand(ctx, c, args, getUsage, 2, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		id, err := positiveID("PIPELINE", pos[1])
		if err != nil {
			return err
		}
		pin, err := cl.GetPin(ctx, pos[0], id)
		if err != nil {
			return err
		}
		if err := c.printPin(pin, af); err != nil {
			return err
		}
		if pin.State == client.StateDeleted {
			return &goneError{msg: pin.Ref + " is deleted"}
		}
		return nil
	})
}
