package cli

import (
	"context"
	"flag"

	"github.com/refkeeper/refkeeper/client"
)

const pinUsage = `refkeeper pin PROJECT PIPELINE (--sha SHA | --merge-request IID | --merge-target REF [--merge-source REF] [--squash]) [flags]

Pins refs/pipelines/PIPELINE: at SHA; at what merge request IID's merge ref
points at now; or at a merge the service computes of --merge-source into
--merge-target (--merge-source may be left out with --merge-request, where
the host has head refs).`

func runPin(ctx context.Context, c *cli, args []string) int {
	var (
		sha, source, target string
		mr                  int64
		squash              bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&sha, "sha", "", "the commit to pin (40 hex)")
		fs.Int64Var(&mr, "merge-request", 0, "the merge request IID")
		fs.StringVar(&target, "merge-target", "", "compute the merge into this SHA, ref or branch")
		fs.StringVar(&source, "merge-source", "", "compute the merge of this SHA, ref or branch")
		fs.BoolVar(&squash, "squash", false, "with --merge-target: a squash commit (one parent) instead of a merge commit")
	}
	return runAPICommand(ctx, c, args, pinUsage, 2, define, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
		id, err := positiveID("PIPELINE", pos[1])
		if err != nil {
			return err
		}
		var req client.PinRequest
		if mr != 0 {
			if mr < 1 {
				return usagef("--merge-request must be at least 1")
			}
			req.MergeRequestIID = &mr
		}
		switch {
		case target != "":
			if sha != "" {
				return usagef("give --sha or --merge-target, not both")
			}
			req.Merge = &client.MergeRequest{Source: source, Target: target, Mode: client.ModeMerge}
			if squash {
				req.Merge.Mode = client.ModeSquash
			}
		case source != "" || squash:
			return usagef("--merge-source and --squash need --merge-target")
		case sha != "":
			req.SHA = sha
		case mr == 0:
			return usagef("give --sha, --merge-request or --merge-target")
		}
		pin, created, err := cl.Pin(ctx, pos[0], id, req)
		if err != nil {
			return err
		}
		answer := "existed (200)"
		if created {
			answer = "created (201)"
		}
		return c.printPin(pin, af, [2]string{"answer", answer})
	})
}
