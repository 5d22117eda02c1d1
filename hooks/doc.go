// Package hooks turns the git hosts' own webhook deliveries into pins,
// finishes and merge-request closes: GitLab's Pipeline and Merge Request
// Hooks, GitHub's workflow_run and pull_request events, and Gitea's (also
// Forgejo's) workflow_run and pull_request events.
//
// A workflow run of a pull request (GitHub's, and Gitea Actions' alike) is
// pinned at the merge of pull_requests[0].head.sha into the tip of branch
// pull_requests[0].base.ref, resolved (on a mirror, fetched) as the
// delivery is applied: neither host's base.sha is that tip (Gitea's is the
// merge base, GitHub's the base as of the pull request's last update). A
// later delivery of a run that has a pin keeps the target it was pinned
// with, so a re-run tests the same merge.
//
// A delivery is verified by its host's scheme over the raw body, in constant
// time (GitLab: X-Gitlab-Token is the secret; GitHub: X-Hub-Signature-256 is
// "sha256=" and the lower-case hex HMAC-SHA256 of the body; Gitea: the bare
// hex HMAC-SHA256 in X-Gitea-Signature or Forgejo's X-Forgejo-Signature),
// then parsed, mapped to one domain call and answered with an Action.
// The secrets tried are the host-wide one (Secrets) and those of the
// project the payload names (PerProject, the access file's hooks):
// reading that name first is one bounded pass over a body the caller has
// already size-limited. A delivery verified by a project's own secret acts
// on that project only, and its delivery id is remembered under that
// project, so no project's secret replays another's answer.
// What is ignored or failed for good is still an answer (hosts disable hooks
// that keep failing); only a transient failure is an error, so that the host
// delivers again.
//
// A delivery id seen within DeliveryTTL is answered with the stored answer
// and changes nothing. What the receiver remembers of deliveries (answers,
// and each pin's latest event time) is a store of its own that hooks
// declares (Deliveries) and keeps in Redis (RedisDeliveries, with the keys
// of refs.Keys), apart from the pin service. Only answers are stored, never
// a transient failure, so a redelivery after one is applied as new.
//
// Hosts do not promise order. Each pin keeps the time of the latest webhook
// event applied to it, on the host's own clock as its payload states it:
// for GitLab, a finishing status's object_attributes.finished_at, and for a
// running (or created, pending, ...) status the latest created_at,
// started_at or finished_at of its builds; for GitHub, workflow_run's
// updated_at; for Gitea, which sends no updated_at, completed_at for
// completed and the later of started_at and completed_at for requested
// (Gitea writes a time it has not got as the Unix epoch: no time). A pin finished through the API has no such time; its
// finished_at stands in. A pipeline that is running again after it finished (a
// retried job) is told from a late delivery by that time alone:
//
//   - a running delivery for a finished pin re-opens it only when its time
//     is after the recorded one (a build created or started after the
//     pipeline finished); otherwise it is late and ignored;
//   - a finishing delivery older than the recorded time (the pin was
//     re-opened by a later event) is late and ignored;
//   - a delivery without a usable time never re-opens a finished pin.
//
// Two deliveries of one pipeline racing each other are each applied whole
// (pin and finish are idempotent), but which of them wins is not decided
// by their times.
//
// hooks speaks to the domain (refs) only, never to git; api mounts it and
// cmd builds it. Nothing else imports it.
package hooks
