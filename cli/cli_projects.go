package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/refkeeper/refkeeper/client"
)

const projectsUsage = `refkeeper projects [list] [--limit N] [--cursor C] [--all] [flags]
       refkeeper projects get PROJECT [flags]
       refkeeper projects mirror PROJECT --upstream URL [--host gitlab|github|gitea|generic] [--credential NAME] [flags]
       refkeeper projects delete PROJECT [flags]

Lists the projects (local and mirrors), shows one, registers a mirror of an
upstream, or removes a mirror.`

func runProjects(ctx context.Context, c *cli, args []string) int {
	verb := "list"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		verb, args = args[0], args[1:]
	}
	c.name += " " + verb
	switch verb {
	case "list":
		var (
			cursor string
			limit  int
			all    bool
		)
		define := func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 0, "projects per page (0: the server's default)")
			fs.StringVar(&cursor, "cursor", "", "start at this next_cursor of an earlier page")
			fs.BoolVar(&all, "all", false, "follow next_cursor to the last page")
		}
		return runAPICommand(ctx, c, args, projectsUsage, 0, define, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, _ []string) error {
			opts := client.ProjectListOptions{Cursor: cursor, Limit: limit}
			page := &client.ProjectPage{Projects: []client.Project{}}
			if all {
				for p, err := range cl.AllProjects(ctx, opts) {
					if err != nil {
						return err
					}
					page.Projects = append(page.Projects, p)
				}
			} else {
				var err error
				if page, err = cl.ListProjects(ctx, opts); err != nil {
					return err
				}
			}
			if af.json {
				return c.printJSON(page)
			}
			if err := c.printProjects(page.Projects); err != nil {
				return err
			}
			if page.NextCursor != nil {
				c.stderrf("more: --cursor %s (or --all)\n", *page.NextCursor)
			}
			return nil
		})
	case "get":
		return runAPICommand(ctx, c, args, projectsUsage, 1, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
			p, err := cl.GetProject(ctx, pos[0])
			if err != nil {
				return err
			}
			return c.printProject(p, af)
		})
	case "mirror":
		var req client.MirrorRequest
		define := func(fs *flag.FlagSet) {
			fs.StringVar(&req.Upstream, "upstream", "", "the upstream's URL (http, https or file; no credentials in it)")
			fs.StringVar(&req.Host, "host", "", "the host kind: gitlab, github, gitea or generic (default generic)")
			fs.StringVar(&req.Credential, "credential", "", "the name of an entry of the server's --credentials file")
		}
		return runAPICommand(ctx, c, args, projectsUsage, 1, define, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
			if req.Upstream == "" {
				return usagef("--upstream is required")
			}
			p, _, err := cl.PutMirror(ctx, pos[0], req)
			if err != nil {
				return err
			}
			return c.printProject(p, af)
		})
	case "delete":
		return runAPICommand(ctx, c, args, projectsUsage, 1, nil, func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error {
			if err := cl.DeleteProject(ctx, pos[0]); err != nil {
				return err
			}
			if af.json {
				return c.printJSON(map[string]any{"project": pos[0], "deleted": true})
			}
			_, err := fmt.Fprintf(c.stdout, "deleted mirror %s\n", pos[0])
			return err
		})
	}
	fmt.Fprintf(c.stderr, "usage: %s\n", projectsUsage)
	return ExitUsage
}

func str(s string) string { return s }

func (c *cli) printProject(p *client.Project, af *apiFlags) error {
	if af.json {
		return c.printJSON(p)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, r := range [][2]string{
		{"project", p.Project}, {"kind", p.Kind}, {"state", p.State},
		{"upstream", orDash(p.Upstream, str)}, {"host", orDash(p.Host, str)}, {"credential", orDash(p.Credential, str)},
		{"fetched", orDash(p.FetchedAt, formatTime)}, {"last error", orDash(p.LastError, str)},
	} {
		fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
	}
	return w.Flush()
}

func (c *cli) printProjects(ps []client.Project) error {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PROJECT\tKIND\tSTATE\tHOST\tUPSTREAM\tFETCHED")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Project, p.Kind, p.State, orDash(p.Host, str),
			orDash(p.Upstream, str), orDash(p.FetchedAt, formatTime))
	}
	return w.Flush()
}
