package cli

import (
	"context"
	"flag"

	"github.com/refkeeper/refkeeper/client"
)

const listUsage = `refkeeper list PROJECT [--state pinned|finished|deleted] [--limit N] [--cursor C] [--all] [flags]

Lists pins, newest first: one page (--limit, default the server's 100),
or with --all every page. The JSON form is the API's
{"pins": [...], "next_cursor": ...}; with --all next_cursor is null.`

func runList(ctx context.Context, c *cli, args []string) int {
	var (
		state, cursor string
		limit         int
		all           bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&state, "state", "", "only pins in this state")
		fs.IntVar(&limit, "limit", 0, "pins per page, 1 to 1000 (0: the server's default)")
		fs.StringVar(&cursor, "cursor", "", "start at this next_cursor of an earlier page")
		fs.BoolVar(&all, "all", false, "follow next_cursor to the last page")
	}
	return runAPICommand(ctx, c, args, listUsage, 1, define, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		opts := client.ListOptions{State: client.State(state), Cursor: cursor, Limit: limit}
		page := &client.PinPage{Pins: []client.Pin{}}
		if all {
			for p, err := range cl.AllPins(ctx, pos[0], opts) {
				if err != nil {
					return err
				}
				page.Pins = append(page.Pins, p)
			}
		} else {
			var err error
			if page, err = cl.ListPins(ctx, pos[0], opts); err != nil {
				return err
			}
		}
		if af.json {
			return c.printJSON(page)
		}
		if err := c.printPins(page.Pins); err != nil {
			return err
		}
		if page.NextCursor != nil {
			c.stderrf("more: --cursor %s (or --all)\n", *page.NextCursor)
		}
		return nil
	})
}
