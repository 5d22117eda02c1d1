package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/refkeeper/refkeeper/client"
)

const gcUsage = `refkeeper gc [flags]

Runs one GC sweep over every project now and prints what it did.`

func runGC(ctx context.Context, c *cli, args []string) int {
	return runAPICommand(ctx, c, args, gcUsage, 0, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, _ []string) error {
		res, err := cl.GC(ctx)
		if err != nil {
			return err
		}
		if af.json {
			return c.printJSON(res)
		}
		w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		for _, r := range []struct {
			k string
			v any
		}{{"deleted", res.Deleted}, {"adopted", res.Adopted}, {"kept", res.Kept}, {"restored", res.Restored},
			{"purged", res.Purged}, {"failed projects", res.FailedProjects}, {"duration ms", res.DurationMS}} {
			fmt.Fprintf(w, "%s\t%v\n", r.k, r.v)
		}
		return w.Flush()
	})
}
