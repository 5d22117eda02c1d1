package cli

import (
	"context"
	"flag"

	"github.com/refkeeper/refkeeper/client"
)

const finishUsage = `refkeeper finish PROJECT PIPELINE [--status STATUS] [flags]

Releases the pin: its ref stays for the retention window, for retried jobs.
Exit status 3 when the pipeline was never pinned.`

func runFinish(ctx context.Context, c *cli, args []string) int {
	var status string
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&status, "status", "", "the pipeline's outcome (success, failed, …), for the record")
	}
	return runAPICommand(ctx, c, args, finishUsage, 2, define, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		id, err := positiveID("PIPELINE", pos[1])
		if err != nil {
			return err
		}
		pin, err := cl.Finish(ctx, pos[0], id, status)
		if err != nil {
			return err
		}
		return c.printPin(pin, af)
	})
}
