package refs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps pin records in Redis. Every state change is one Lua script
// (see scripts.go), so it is atomic against any number of clients.
type Store struct {
	Client redis.UniversalClient
	// Keys is the key schema; the zero value is the default one.
	Keys Keys
	// Addr says where Redis is, for messages (readiness): an address, or
	// the sentinels and master name; never a password. Empty: not said.
	Addr string
	// WaitReplicas is how many replicas must have a request's changes
	// before it answers (see Replicated); zero: none.
	WaitReplicas int
}

// StoreError is a failed Redis call: transient, nothing was changed by the
// script that failed (scripts are atomic).
type StoreError struct {
	Op  string
	Err error
}

func (e *StoreError) Error() string { return fmt.Sprintf("redis %s: %v", e.Op, e.Err) }
func (e *StoreError) Unwrap() error { return e.Err }

func isStoreError(err error) bool {
	var s *StoreError
	return errors.As(err, &s)
}

// outcome is what a script answered, decoded once: its status, the pin as
// it is after the script (absent when it has no record), whether the caller
// must make sure the ref exists, and when the pin is next due (zero: not
// known or on no clock).
type outcome struct {
	Status   status
	ID       PipelineID // the pin the script answered about
	Pin      Pin
	HasPin   bool
	Recreate bool
	Due      time.Time
}

func (s *Store) run(ctx context.Context, script pinTransition, p Project, id PipelineID, args ...any) (outcome, error) {
	argv := append([]any{id.String()}, args...)
	res, err := script.one.Run(ctx, s.Client, s.Keys.pin(p, id), argv...).StringSlice()
	if err != nil {
		return outcome{}, &StoreError{Op: "script", Err: err}
	}
	return checkedOutcome(p, id, res)
}

// checkedOutcome decodes the answer to a question about pipeline id, and
// refuses an answer about another one.
func checkedOutcome(p Project, id PipelineID, res []string) (outcome, error) {
	out, err := parseOutcome(p, res)
	if err == nil && out.ID != id {
		err = &StoreError{Op: "script", Err: fmt.Errorf("answer for pipeline %d, asked about %d", out.ID, id)}
	}
	return out, err
}

// manyChunk is how many pins one batch call handles: Redis runs one script
// at a time, so a call over thousands would hold up every other client (a
// pin waiting behind it); a few hundred take a few milliseconds.
const manyChunk = 250

// runMany runs a per-pin script for many pins of a project in one round
// trip, manyChunk pins per script call; perPin, when not nil, holds each
// pin's own arguments (see batchLua). The answers are in the order of ids:
// each names its pin, and an answer for another pin than asked is an error.
func (s *Store) runMany(ctx context.Context, script pinTransition, p Project, ids []PipelineID, perPin [][]any, shared ...any) ([]outcome, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// Loaded first, so that the pipeline can call it by hash.
	if err := script.many.Load(ctx, s.Client).Err(); err != nil {
		return nil, &StoreError{Op: "load script", Err: err}
	}
	var cmds []*redis.Cmd
	_, err := s.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for start := 0; start < len(ids); start += manyChunk {
			end := min(start+manyChunk, len(ids))
			var own [][]any
			if perPin != nil {
				own = perPin[start:end]
			}
			keys, argv := batchArgs(s.Keys, p, ids[start:end], own, shared)
			cmds = append(cmds, script.many.EvalSha(ctx, pipe, keys, argv...))
		}
		return nil
	})
	if err != nil {
		return nil, &StoreError{Op: "scripts", Err: err}
	}
	outs := make([]outcome, 0, len(ids))
	for _, c := range cmds {
		replies, err := c.Slice()
		if err != nil {
			return nil, &StoreError{Op: "script", Err: err}
		}
		for _, r := range replies {
			res, ok := stringsOf(r)
			if !ok || len(outs) == len(ids) {
				return nil, &StoreError{Op: "script", Err: fmt.Errorf("malformed batch reply %v", r)}
			}
			out, err := checkedOutcome(p, ids[len(outs)], res)
			if err != nil {
				return nil, err
			}
			outs = append(outs, out)
		}
	}
	if len(outs) != len(ids) {
		return nil, &StoreError{Op: "script", Err: fmt.Errorf("%d answers for %d pins", len(outs), len(ids))}
	}
	return outs, nil
}

// stringsOf reads one pin's answer out of a batch reply.
func stringsOf(v any) ([]string, bool) {
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(items))
	for i, it := range items {
		if out[i], ok = it.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// parseOutcome decodes {status, id, flag, due, hash fields...}, a script's
// answer about one pin.
func parseOutcome(p Project, res []string) (outcome, error) {
	if len(res) < 4 || len(res)%2 != 0 {
		return outcome{}, &StoreError{Op: "script", Err: fmt.Errorf("malformed reply %q", res)}
	}
	st, err := parseStatus(res[0])
	if err != nil {
		return outcome{}, &StoreError{Op: "script", Err: err}
	}
	n, err := strconv.ParseInt(res[1], 10, 64)
	if err != nil || n < 1 {
		return outcome{}, &StoreError{Op: "script", Err: fmt.Errorf("reply names pipeline %q", res[1])}
	}
	id := PipelineID(n)
	out := outcome{Status: st, ID: id, Recreate: res[2] == "1", Due: msTime(res[3])}
	if len(res) > 4 {
		fields := make(map[string]string, (len(res)-4)/2)
		for i := 4; i+1 < len(res); i += 2 {
			fields[res[i]] = res[i+1]
		}
		out.Pin, out.HasPin = pinFromHash(p, id, fields), true
	}
	return out, nil
}

func pinFromHash(p Project, id PipelineID, h map[string]string) Pin {
	mr, _ := strconv.ParseInt(h["mr"], 10, 64)
	return Pin{
		Project:         p,
		PipelineID:      id,
		SHA:             ObjectID(h["sha"]),
		MergeRequestIID: MergeRequestIID(mr),
		State:           State(h["state"]),
		CreatedAt:       msTime(h["created"]),
		FinishedAt:      msTime(h["finished"]),
		ExpiresAt:       msTime(h["expires"]),
		Adopted:         h["adopted"] == "1",
		Merge:           decodeMerge(h["merge"]),
		deletionClaimed: h["del"] != "" && !strings.HasPrefix(h["del"], "!"),
	}
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func msDur(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Get reads one pin; ok is false when there is no record.
func (s *Store) Get(ctx context.Context, p Project, id PipelineID) (pin Pin, ok bool, err error) {
	h, err := s.Client.HGetAll(ctx, s.Keys.Pin(p, id)).Result()
	if err != nil {
		return Pin{}, false, &StoreError{Op: "get pin", Err: err}
	}
	if len(h) == 0 {
		return Pin{}, false, nil
	}
	return pinFromHash(p, id, h), true, nil
}

// getMany reads pins in one round trip; ids without a record are skipped.
func (s *Store) getMany(ctx context.Context, p Project, ids []PipelineID) ([]Pin, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, s.Keys.Pin(p, id))
		}
		return nil
	})
	if err != nil {
		return nil, &StoreError{Op: "get pins", Err: err}
	}
	pins := make([]Pin, 0, len(ids))
	for i, cmd := range cmds {
		if h := cmd.Val(); len(h) > 0 {
			pins = append(pins, pinFromHash(p, ids[i], h))
		}
	}
	return pins, nil
}

// AddProject remembers a project that has records, for metrics and sweeps.
func (s *Store) AddProject(ctx context.Context, p Project) error {
	if err := s.Client.SAdd(ctx, s.Keys.Projects(), string(p)).Err(); err != nil {
		return &StoreError{Op: "add project", Err: err}
	}
	return nil
}

// Projects lists the projects that have records.
func (s *Store) Projects(ctx context.Context) ([]Project, error) {
	names, err := s.Client.SMembers(ctx, s.Keys.Projects()).Result()
	if err != nil {
		return nil, &StoreError{Op: "list projects", Err: err}
	}
	out := make([]Project, 0, len(names))
	for _, n := range names {
		if p, err := ParseProject(n); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// Pin records a pin at sha after its ref exists; see pinScript.
func (s *Store) Pin(ctx context.Context, p Project, id PipelineID, sha ObjectID, mr MergeRequestIID, now time.Time) (outcome, error) {
	return s.PinMerge(ctx, p, id, sha, mr, nil, now)
}

// PinMerge is Pin that also records the inputs of the pin's computed merge
// (nil: none); see pinScript.
func (s *Store) PinMerge(ctx context.Context, p Project, id PipelineID, sha ObjectID, mr MergeRequestIID, merge *Merge, now time.Time) (outcome, error) {
	return s.run(ctx, pinScript, p, id, string(sha), strconv.FormatInt(int64(mr), 10), ms(now), merge.encode())
}

// Finish releases a pin; see finishScript.
func (s *Store) Finish(ctx context.Context, p Project, id PipelineID, now time.Time, pol Policy) (outcome, error) {
	return s.run(ctx, finishScript, p, id, ms(now), msDur(pol.Retention), msDur(pol.MaxAge))
}

// Claim claims a pin for deletion; see claimScript.
func (s *Store) Claim(ctx context.Context, p Project, id PipelineID, now time.Time, maxAge time.Duration, token string, force bool) (outcome, error) {
	f := "0"
	if force {
		f = "1"
	}
	return s.run(ctx, claimScript, p, id, ms(now), msDur(maxAge), token, f)
}

// Tombstone records a ref without a live pin as deleted, claimed with
// token, before it is deleted; see tombstoneScript.
func (s *Store) Tombstone(ctx context.Context, p Project, id PipelineID, sha ObjectID, now time.Time, token string) (outcome, error) {
	return s.run(ctx, tombstoneScript, p, id, string(sha), ms(now), token)
}

// ClaimsHeld reports for each pin whether its deletion claim is still token:
// false when a re-pin called the deletion off or another deleter took over.
// It only reads, in one round trip.
func (s *Store) ClaimsHeld(ctx context.Context, p Project, ids []PipelineID, token string) ([]bool, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGet(ctx, s.Keys.Pin(p, id), "del")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, &StoreError{Op: "read deletion claims", Err: err}
	}
	held := make([]bool, len(ids))
	for i, c := range cmds {
		held[i] = c.Val() == token
	}
	return held, nil
}

// RestoreAllowed reports whether the ref of a pin may be re-created at sha by
// a sweep that listed the refs at listedAt: the pin is live at sha, nobody is
// deleting it, and it is older than the listing (a younger pin's ref may
// simply have been made after it).
func (s *Store) RestoreAllowed(ctx context.Context, p Project, id PipelineID, sha ObjectID, listedAt time.Time) (bool, error) {
	pin, ok, err := s.Get(ctx, p, id)
	if err != nil {
		return false, err
	}
	live := ok && (pin.State == StatePinned || pin.State == StateFinished)
	return live && pin.SHA == sha && !pin.deletionClaimed && pin.CreatedAt.Before(listedAt), nil
}

// ClaimDue claims every due pin among ids for deletion in one round trip
// (see claimScript); answers are in the order of ids.
func (s *Store) ClaimDue(ctx context.Context, p Project, ids []PipelineID, now time.Time, maxAge time.Duration, token string) ([]outcome, error) {
	return s.runMany(ctx, claimScript, p, ids, nil, ms(now), msDur(maxAge), token, "0")
}

// CommitDeletes marks claimed pins deleted; see commitDeleteScript.
func (s *Store) CommitDeletes(ctx context.Context, p Project, ids []PipelineID, now time.Time, token string) ([]outcome, error) {
	return s.runMany(ctx, commitDeleteScript, p, ids, nil, ms(now), token)
}

// Purge drops the records of pins deleted more than max-age ago.
func (s *Store) Purge(ctx context.Context, p Project, ids []PipelineID, now time.Time, maxAge time.Duration) ([]outcome, error) {
	return s.runMany(ctx, purgeScript, p, ids, nil, ms(now), msDur(maxAge))
}

// AdoptMany adopts refs in one round trip and answers how many were
// adopted; see adoptScript.
func (s *Store) AdoptMany(ctx context.Context, p Project, refs map[PipelineID]ObjectID, now, listedAt time.Time) (int, error) {
	ids := make([]PipelineID, 0, len(refs))
	shas := make([][]any, 0, len(refs))
	for id, sha := range refs {
		ids = append(ids, id)
		shas = append(shas, []any{string(sha)})
	}
	outs, err := s.runMany(ctx, adoptScript, p, ids, shas, ms(now), ms(listedAt))
	if err != nil {
		return 0, &StoreError{Op: "adopt refs", Err: err}
	}
	adopted := 0
	for _, out := range outs {
		if out.Status == statusAdopted {
			adopted++
		}
	}
	return adopted, nil
}

// Adopt adopts one ref, as AdoptMany does; see adoptScript.
func (s *Store) Adopt(ctx context.Context, p Project, id PipelineID, sha ObjectID, now, listedAt time.Time) (outcome, error) {
	return s.run(ctx, adoptScript, p, id, string(sha), ms(now), ms(listedAt))
}

// closeAttempts bounds how often CloseMergeRequest reads a merge request's
// pins again because one was pinned while it was closing.
const closeAttempts = 5

// CloseMergeRequest marks the pins of a merge request closed and answers
// their ids; see closeScript.
func (s *Store) CloseMergeRequest(ctx context.Context, p Project, iid MergeRequestIID, now time.Time) ([]PipelineID, error) {
	min, max := mergeRequestRange(iid)
	for range closeAttempts {
		members, err := s.Client.ZRangeByLex(ctx, s.Keys.MergeRequests(p), &redis.ZRangeBy{Min: min, Max: max}).Result()
		if err != nil {
			return nil, &StoreError{Op: "close merge request", Err: err}
		}
		keys := []string{s.Keys.MergeRequests(p), s.Keys.expires(p)}
		argv := []any{ms(now), min, max}
		for _, m := range members {
			if id, ok := memberID(m); ok {
				keys = append(keys, s.Keys.Pin(p, id))
				argv = append(argv, id.String())
			}
		}
		res, err := closeScript.Run(ctx, s.Client, keys, argv...).StringSlice()
		if err != nil {
			return nil, &StoreError{Op: "close merge request", Err: err}
		}
		if len(res) > 0 && res[0] == "ok" {
			return parseIDs(res[1:]), nil
		}
	}
	return nil, &StoreError{Op: "close merge request", Err: errors.New("the merge request kept getting new pins")}
}

func parseIDs(ss []string) []PipelineID {
	ids := make([]PipelineID, 0, len(ss))
	for _, s := range ss {
		if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 {
			ids = append(ids, PipelineID(id))
		}
	}
	return ids
}

// Due answers up to limit pipeline ids of records due at now under max-age;
// see dueScript.
func (s *Store) Due(ctx context.Context, p Project, now time.Time, maxAge time.Duration, limit int) ([]PipelineID, error) {
	res, err := dueScript.Run(ctx, s.Client, s.Keys.clocks(p), ms(now), msDur(maxAge), strconv.Itoa(limit)).StringSlice()
	if err != nil {
		return nil, &StoreError{Op: "list due pins", Err: err}
	}
	return parseIDs(res), nil
}

// NextDue answers when a record of the project is next due under max-age,
// and false when none is on any clock.
func (s *Store) NextDue(ctx context.Context, p Project, maxAge time.Duration) (time.Time, bool, error) {
	res, err := nextDueScript.Run(ctx, s.Client, s.Keys.clocks(p), msDur(maxAge)).Text()
	if err != nil {
		return time.Time{}, false, &StoreError{Op: "next due pin", Err: err}
	}
	if res == "" {
		return time.Time{}, false, nil
	}
	return msTime(res), true, nil
}

// dropChunk is how many records of a gone project one script call removes.
const dropChunk = 1000

// DropProject removes the records and keys of a project whose repository is
// gone, and the project from the set of projects, if it has no live pin;
// see dropProjectScript. It answers whether the project was dropped.
func (s *Store) DropProject(ctx context.Context, p Project) (bool, error) {
	for {
		members, err := s.Client.ZRange(ctx, s.Keys.Index(p, StateDeleted), 0, dropChunk-1).Result()
		if err != nil {
			return false, &StoreError{Op: "drop project", Err: err}
		}
		keys := append(s.Keys.project(p), s.Keys.Reconciled(p))
		argv := make([]any, 0, len(members))
		for _, m := range members {
			id, ok := memberID(m)
			if !ok {
				continue
			}
			keys = append(keys, s.Keys.Pin(p, id))
			argv = append(argv, m)
		}
		n, err := dropProjectScript.Run(ctx, s.Client, keys, argv...).Int()
		if err != nil {
			return false, &StoreError{Op: "drop project", Err: err}
		}
		switch n {
		case -1:
			return false, nil
		case 0:
			// A pin made between the script and this is registered again by
			// its process within projectRegisterEvery, and sweeps find its
			// repository on disk meanwhile.
			if err := s.Client.SRem(ctx, s.Keys.Projects(), string(p)).Err(); err != nil {
				return false, &StoreError{Op: "drop project", Err: err}
			}
			return true, nil
		}
	}
}

// memberID takes the pipeline id out of an index member
// "<created ms, 15 digits>:<id, 19 digits>".
func memberID(m string) (PipelineID, bool) {
	_, idPart, ok := strings.Cut(m, ":")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(strings.TrimLeft(idPart, "0"), 10, 64)
	return PipelineID(id), err == nil && id > 0
}

// validCursor reports whether a list cursor has the shape of an index member.
func validCursor(c string) bool {
	created, idPart, ok := strings.Cut(c, ":")
	if !ok || len(created) != 15 || len(idPart) != 19 {
		return false
	}
	for _, r := range created + idPart {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// List answers up to limit pins in the given states, newest first, starting
// after cursor (empty: from the newest), and the cursor of the next page
// (empty: no more). Index members of all states sort the same way, so a page
// over several states is a merge of each state's page.
func (s *Store) List(ctx context.Context, p Project, states []State, cursor string, limit int) ([]Pin, string, error) {
	max := "+"
	if cursor != "" {
		max = "(" + cursor
	}
	var members []string
	for _, st := range states {
		page, err := s.Client.ZRevRangeByLex(ctx, s.Keys.Index(p, st), &redis.ZRangeBy{
			Max: max, Min: "-", Count: int64(limit + 1),
		}).Result()
		if err != nil {
			return nil, "", &StoreError{Op: "list pins", Err: err}
		}
		members = append(members, page...)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(members)))
	next := ""
	if len(members) > limit {
		members = members[:limit]
		next = members[limit-1]
	}
	ids := make([]PipelineID, 0, len(members))
	for _, m := range members {
		if id, ok := memberID(m); ok {
			ids = append(ids, id)
		}
	}
	pins, err := s.getMany(ctx, p, ids)
	if err != nil {
		return nil, "", err
	}
	return pins, next, nil
}

var countedStates = []State{StatePinned, StateFinished, StateDeleted}

// Count answers how many pins of the project are in each state.
func (s *Store) Count(ctx context.Context, p Project) (map[State]int64, error) {
	stats, err := s.projectStats(ctx, []Project{p})
	if err != nil {
		return nil, err
	}
	return stats[0].counts, nil
}

// projectStat is what metrics show of one project: its pins by state and
// the creation time of its oldest pinned pin (zero: none).
type projectStat struct {
	counts map[State]int64
	oldest time.Time
}

// projectStats reads the stats of projects in one round trip.
func (s *Store) projectStats(ctx context.Context, projects []Project) ([]projectStat, error) {
	counts := make([][]*redis.IntCmd, len(projects))
	oldest := make([]*redis.StringSliceCmd, len(projects))
	_, err := s.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range projects {
			for _, st := range countedStates {
				counts[i] = append(counts[i], pipe.ZCard(ctx, s.Keys.Index(p, st)))
			}
			oldest[i] = pipe.ZRangeByLex(ctx, s.Keys.Index(p, StatePinned), &redis.ZRangeBy{Min: "-", Max: "+", Count: 1})
		}
		return nil
	})
	if err != nil {
		return nil, &StoreError{Op: "count pins", Err: err}
	}
	out := make([]projectStat, len(projects))
	for i := range projects {
		out[i].counts = make(map[State]int64, len(countedStates))
		for k, st := range countedStates {
			out[i].counts[st] = counts[i][k].Val()
		}
		if first := oldest[i].Val(); len(first) > 0 {
			created, _, _ := strings.Cut(first[0], ":")
			out[i].oldest = msTime(strings.TrimLeft(created, "0"))
		}
	}
	return out, nil
}

// LiveIDs answers the ids of every pinned and finished pin of the project.
func (s *Store) LiveIDs(ctx context.Context, p Project) ([]PipelineID, error) {
	var ids []PipelineID
	for _, st := range []State{StatePinned, StateFinished} {
		members, err := s.Client.ZRange(ctx, s.Keys.Index(p, st), 0, -1).Result()
		if err != nil {
			return nil, &StoreError{Op: "list live pins", Err: err}
		}
		for _, m := range members {
			if id, ok := memberID(m); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// RecentlyReconciled reports whether the project's refs were compared with
// its records within the reconcile interval (the marker expires with it, and
// goes with everything else if Redis loses its data).
func (s *Store) RecentlyReconciled(ctx context.Context, p Project) (bool, error) {
	n, err := s.Client.Exists(ctx, s.Keys.Reconciled(p)).Result()
	if err != nil {
		return false, &StoreError{Op: "read reconcile marker", Err: err}
	}
	return n == 1, nil
}

// MarkReconciled records a reconcile of the project for ttl.
func (s *Store) MarkReconciled(ctx context.Context, p Project, at time.Time, ttl time.Duration) error {
	if err := s.Client.Set(ctx, s.Keys.Reconciled(p), ms(at), ttl).Err(); err != nil {
		return &StoreError{Op: "write reconcile marker", Err: err}
	}
	return nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.Client.Ping(ctx).Err(); err != nil {
		return &StoreError{Op: "ping", Err: err}
	}
	return nil
}

// PurgeProject removes every record of the project: its pins, indexes and
// due set (every key under its hash tag), and its entry in the project set.
func (s *Store) PurgeProject(ctx context.Context, p Project) error {
	pattern := s.Keys.ProjectPattern(p)
	purge := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := c.Unlink(ctx, batch...).Err()
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cc, ok := s.Client.(*redis.ClusterClient); ok {
		// Keys live on the master owning the project's slot; SCAN sees one
		// node at a time.
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return purge(ctx, c) })
	} else {
		err = purge(ctx, s.Client)
	}
	if err != nil {
		return &StoreError{Op: "purge project", Err: err}
	}
	if err := s.Client.SRem(ctx, s.Keys.Projects(), string(p)).Err(); err != nil {
		return &StoreError{Op: "purge project", Err: err}
	}
	return nil
}
