package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/refkeeper/refkeeper/refs"
)

// Domain is what deliveries are applied to; *refs.Service has it.
type Domain interface {
	Pin(ctx context.Context, req refs.PinRequest) (refs.Pin, bool, error)
	Get(ctx context.Context, p refs.Project, id refs.PipelineID) (refs.Pin, error)
	Finish(ctx context.Context, p refs.Project, id refs.PipelineID) (refs.Pin, error)
	CloseMergeRequest(ctx context.Context, p refs.Project, iid refs.MergeRequestIID) ([]refs.Pin, error)
}

// Action is what a delivery did.
type Action string

// The answered actions.
const (
	Pinned   Action = "pinned"
	Finished Action = "finished"
	Closed   Action = "closed"
	Ignored  Action = "ignored"
	Failed   Action = "failed"
)

// Result is the answer to one delivery. For Failed, Err is the domain's
// error (permanent: never refs.IsUnavailable) and Reason is left to the
// caller, who knows the error codes.
type Result struct {
	Action Action
	Reason string
	Pins   []refs.Pin
	Err    error
}

// DefaultDeliveryTTL is how long a delivery id is remembered.
const DefaultDeliveryTTL = 24 * time.Hour

// Receiver verifies, de-duplicates and applies webhook deliveries.
type Receiver struct {
	Domain Domain
	// Deliveries remembers deliveries' answers and pins' event times.
	Deliveries Deliveries
	// Secrets are the host-wide secrets (the --*-hook-* flags): each
	// covers every project of its host.
	Secrets Secrets
	// PerProject are the secrets of single projects (the --access file's
	// hooks); nil: none.
	PerProject ProjectSecrets
	// DeliveryTTL is how long a delivery's answer is kept for its
	// redeliveries; zero: DefaultDeliveryTTL.
	DeliveryTTL time.Duration
	// Metrics: nil counts nothing.
	Metrics *Metrics
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

func (r *Receiver) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Enabled reports whether the host's webhooks are on: a host-wide secret is
// set, or a per-project one exists (asked anew each time, so an access
// file re-read that adds or removes the last one turns the route on or
// off).
func (r *Receiver) Enabled(h Host) bool {
	return r.Secrets.of(h) != "" || r.PerProject != nil && r.PerProject.CoversHost(string(h))
}

// secretsFor lists the secrets that may sign a delivery naming project
// name: the host-wide one first, then those of the project.
func (r *Receiver) secretsFor(h Host, name string) []string {
	var out []string
	if s := r.Secrets.of(h); s != "" {
		out = append(out, s)
	}
	if r.PerProject == nil {
		return out
	}
	// A delivery that names no project (a ping, a push of another kind)
	// is for the secrets that cover every project only: "" matches no
	// project's name and no prefix, only "*".
	p, err := refs.ParseProject(name)
	if err != nil {
		p = ""
	}
	return append(out, r.PerProject.HookSecrets(string(h), p)...)
}

// Render writes a Result as the body of the answer.
type Render func(Result) ([]byte, error)

// Receive handles one delivery from host h with its headers and raw body
// and answers the body to send with 200: the stored one for a delivery id
// seen within DeliveryTTL, else render's of the new result. Errors:
// *UnauthorizedError, *MalformedError, or a transient one (refs.IsUnavailable):
// then nothing is remembered, and the host's redelivery is applied anew.
func (r *Receiver) Receive(ctx context.Context, h Host, header http.Header, body []byte, render Render) ([]byte, error) {
	label := eventLabel(h, r.eventHeader(h, header))
	// The signature must verify with a secret that covers the project the
	// payload names: another project's secret is no better than none.
	named := payloadProject(h, body)
	secrets := r.secretsFor(h, named)
	matched, err := verifyAny(h, secrets, header, body)
	if err != nil {
		r.Metrics.count(h, label, countRejected)
		return nil, err
	}
	hostWide := matched == 0 && r.Secrets.of(h) != ""
	id := deliveryID(h, header)
	if id != "" && !hostWide {
		// Verified for one project: its delivery ids are its own, so a
		// project's secret cannot replay another project's remembered
		// answer by sending that delivery's id.
		id = named + " " + id
	}
	if id != "" {
		answer, seen, err := r.Deliveries.RecallDelivery(ctx, string(h), id)
		if err != nil {
			r.Metrics.count(h, label, countUnavailable)
			return nil, err
		}
		if seen {
			r.Metrics.count(h, label, countReplayed)
			return answer, nil
		}
	}
	ev, err := parse(h, header, body)
	if err != nil {
		r.Metrics.count(h, label, countMalformed)
		return nil, err
	}
	// A project's own secret vouches for that project only: the event
	// must act on the very name it was verified for.
	if !hostWide && ev.kind != kindIgnore && ev.project != named {
		r.Metrics.count(h, label, countRejected)
		return nil, &UnauthorizedError{Host: h, Reason: "the delivery acts on another project than its signature covers"}
	}
	res, err := r.apply(ctx, ev)
	if err != nil {
		r.Metrics.count(h, ev.name, countUnavailable)
		return nil, err
	}
	if res.Pins == nil {
		res.Pins = []refs.Pin{}
	}
	answer, err := render(res)
	if err != nil {
		return nil, err
	}
	if id != "" {
		ttl := r.DeliveryTTL
		if ttl <= 0 {
			ttl = DefaultDeliveryTTL
		}
		if err := r.Deliveries.RememberDelivery(ctx, string(h), id, answer, ttl); err != nil {
			// Applied, but not remembered: a redelivery is applied again,
			// which pins and finishes are made to bear.
			r.logger().Warn("could not remember webhook delivery", "host", h, "err", err)
		}
	}
	r.Metrics.count(h, ev.name, string(res.Action))
	if res.Err != nil {
		r.logger().Warn("webhook delivery failed for good", "host", h, "event", ev.name, "err", res.Err)
	} else {
		r.logger().Info("webhook delivery", "host", h, "event", ev.name, "action", res.Action, "reason", res.Reason)
	}
	return answer, nil
}

func (r *Receiver) eventHeader(h Host, header http.Header) string {
	switch h {
	case GitLab:
		return header.Get("X-Gitlab-Event")
	case GitHub:
		return header.Get("X-GitHub-Event")
	}
	if v := header.Get("X-Gitea-Event"); v != "" {
		return v
	}
	return header.Get("X-Forgejo-Event")
}

// apply does what the event asks. Its error is transient; every other
// outcome is a Result.
func (r *Receiver) apply(ctx context.Context, ev event) (Result, error) {
	if ev.kind == kindIgnore {
		return Result{Action: Ignored, Reason: ev.reason}, nil
	}
	p, err := refs.ParseProject(ev.project)
	if err != nil {
		return Result{Action: Ignored, Reason: fmt.Sprintf("%q is not a project name", truncate(ev.project))}, nil
	}
	var res Result
	switch ev.kind {
	case kindPin:
		res, err = r.pin(ctx, p, ev)
	case kindFinish:
		res, err = r.finish(ctx, p, ev)
	case kindClose:
		res, err = r.close(ctx, p, ev)
	}
	if err == nil {
		return res, nil
	}
	var noProject *refs.ProjectNotFoundError
	var noPin *refs.PinNotFoundError
	switch {
	case refs.IsUnavailable(err):
		return Result{}, err
	case errors.As(err, &noProject):
		return Result{Action: Ignored, Reason: "unknown project " + string(p)}, nil
	case errors.As(err, &noPin):
		return Result{Action: Ignored, Reason: fmt.Sprintf("pipeline %d of %s was never pinned", ev.pipeline, p)}, nil
	}
	return Result{Action: Failed, Err: err}, nil
}

func (r *Receiver) pin(ctx context.Context, p refs.Project, ev event) (Result, error) {
	id, err := refs.ParsePipelineID(strconv.FormatInt(ev.pipeline, 10))
	if err != nil {
		return Result{}, err
	}
	req := refs.PinRequest{Project: p, PipelineID: id}
	if ev.iid != 0 {
		if req.MergeRequestIID, err = refs.ParseMergeRequestIID(strconv.FormatInt(ev.iid, 10)); err != nil {
			return Result{}, err
		}
	}
	current, err := r.Domain.Get(ctx, p, id)
	var noPin *refs.PinNotFoundError
	var target, said string // a computed merge's target, and what it is
	if err != nil && !errors.As(err, &noPin) {
		return Result{}, err
	}
	if ev.mergeSource != "" || ev.mergeTarget != "" {
		// A computed merge of the pull request's head into the tip of its
		// base branch, resolved (on a mirror, fetched) now: the pin is of
		// exactly those commits, whatever the host's merge ref.
		if _, err := refs.ParseObjectID(ev.mergeSource); err != nil {
			return Result{}, err
		}
		target, said = ev.mergeTarget, "the tip of "+ev.mergeTarget
		if m := current.Merge; m != nil && string(m.SourceSHA) == ev.mergeSource {
			// This run was pinned before (a redelivery, a re-run): it
			// keeps the target it was pinned with, wherever the branch
			// has moved since, so that a retried job tests the same code.
			target, said = string(m.TargetSHA), "as this run was pinned before"
		}
		req.Merge = &refs.MergeInput{Source: ev.mergeSource, Target: target, Mode: "merge"}
	} else if req.SHA, err = refs.ParseObjectID(ev.sha); err != nil {
		return Result{}, err
	}

	switch {
	case current.PipelineID == 0:
	case current.State != refs.StatePinned:
		// Running again after it finished: a retried job, or a delivery
		// that was late. Only the payload's own time tells.
		last, err := r.Deliveries.EventTime(ctx, p, id)
		if err != nil {
			return Result{}, err
		}
		if last.IsZero() {
			last = current.FinishedAt
		}
		if !last.IsZero() && !ev.at.After(last) {
			return Result{Action: Ignored, Pins: []refs.Pin{current}, Reason: fmt.Sprintf(
				"late delivery: pipeline %d is %s, and nothing in this delivery happened after %s",
				id, current.State, last.UTC().Format(time.RFC3339))}, nil
		}
	}
	pin, created, err := r.Domain.Pin(ctx, req)
	if err != nil {
		return Result{}, err
	}
	if err := r.record(ctx, p, id, ev.at); err != nil {
		return Result{}, err
	}
	reason := fmt.Sprintf("pipeline %d pinned at %s", id, pin.SHA)
	switch {
	case current.State == refs.StateFinished || current.State == refs.StateDeleted:
		reason = fmt.Sprintf("pipeline %d re-opened at %s: a job ran again after it finished", id, pin.SHA)
	case !created && current.State == refs.StatePinned:
		reason = fmt.Sprintf("pipeline %d was pinned at %s already", id, pin.SHA)
	}
	if m := pin.Merge; m != nil {
		reason += fmt.Sprintf(", the merge of %s into %s (%s)", m.SourceSHA, m.TargetSHA, said)
	}
	return Result{Action: Pinned, Reason: reason, Pins: []refs.Pin{pin}}, nil
}

func (r *Receiver) finish(ctx context.Context, p refs.Project, ev event) (Result, error) {
	id, err := refs.ParsePipelineID(strconv.FormatInt(ev.pipeline, 10))
	if err != nil {
		return Result{}, err
	}
	last, err := r.Deliveries.EventTime(ctx, p, id)
	if err != nil {
		return Result{}, err
	}
	if !ev.at.IsZero() && ev.at.Before(last) {
		pins := []refs.Pin{}
		if current, err := r.Domain.Get(ctx, p, id); err == nil {
			pins = append(pins, current)
		} else if refs.IsUnavailable(err) {
			return Result{}, err
		}
		return Result{Action: Ignored, Pins: pins, Reason: fmt.Sprintf(
			"late delivery: pipeline %d finished at %s, but ran again at %s",
			id, ev.at.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))}, nil
	}
	pin, err := r.Domain.Finish(ctx, p, id)
	if err != nil {
		return Result{}, err
	}
	if err := r.record(ctx, p, id, ev.at); err != nil {
		return Result{}, err
	}
	return Result{Action: Finished, Reason: fmt.Sprintf("pipeline %d finished", id), Pins: []refs.Pin{pin}}, nil
}

func (r *Receiver) close(ctx context.Context, p refs.Project, ev event) (Result, error) {
	iid, err := refs.ParseMergeRequestIID(strconv.FormatInt(ev.iid, 10))
	if err != nil {
		return Result{}, err
	}
	pins, err := r.Domain.CloseMergeRequest(ctx, p, iid)
	if err != nil {
		return Result{}, err
	}
	return Result{Action: Closed, Pins: pins, Reason: fmt.Sprintf(
		"merge request %d of %s closed: its %d pins expire once finished", iid, p, len(pins))}, nil
}

func (r *Receiver) record(ctx context.Context, p refs.Project, id refs.PipelineID, at time.Time) error {
	if at.IsZero() {
		return nil
	}
	return r.Deliveries.RecordEventTime(ctx, p, id, at)
}
