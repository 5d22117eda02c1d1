package refs

import (
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// luaDueRule is the due-time rule, the only one: Go never computes a due
// time, it asks these scripts.
//
// A record is due when one of its clocks has run for the length the policy
// in force gives that clock. A clock is a sorted set of pipeline ids scored
// by when it started (Unix ms):
//
//	age      every live pin (pinned or finished), from its creation or, for
//	         an adopted ref, from when it was first seen: length max-age
//	expires  every finished pin, from its expires_at: length 0 (the
//	         retention in force when it finished made that time)
//	purge    every deleted record, from its deletion: length max-age
//
// No score holds a policy, so a process started with another --max-age
// applies it to every pin and record at its next sweep.
const luaDueRule = `
local function clocks(age, expires, purge, maxage)
  return {{age, maxage}, {expires, 0}, {purge, maxage}}
end
`

// Every per-pin script gets the same KEYS and the first ARGV, so the
// shared Lua below can name them:
//
//	KEYS[1] pin hash   KEYS[2] idx:pinned   KEYS[3] idx:finished
//	KEYS[4] idx:deleted   KEYS[5..7] the clocks age, expires, purge
//	KEYS[8] the project's merge request index (see Keys.MergeRequests)
//	ARGV[1] pipeline id
//
// A script touches only the keys it is given (Redis Cluster requires it);
// they all share the hash tag {<project>}, so a script stays in one slot. Times are Unix milliseconds as decimal strings;
// ids are kept as strings because Lua numbers are doubles and would round
// ids above 2^53.
//
// The pin hash fields: sha, mr (merge request iid, "0" for none), state,
// created, finished, expires, deleted (ms or ""), adopted and mrclosed
// ("1"/"0"), merge (a computed merge's mode, source, target and identity,
// or absent) and del: the token of a pending deletion claim; "!" and the
// token once a re-pin called that deletion off while its deleter may still
// be finishing (every re-pin then re-creates the ref, until the deleter's
// commit or a new claim settles it); or "".
//
// Every answer is {status, id, flag, due, hash fields...}: flag "1" from
// pinScript means the caller must make sure the ref exists; due is the
// pin's next due time under the policy in force, where the script knows it.
const luaPrelude = luaDueRule + `
local pin, id = KEYS[1], ARGV[1]
local AGE, EXPIRES, PURGE, MRS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local function idx(state)
  if state == 'pinned' then return KEYS[2] elseif state == 'finished' then return KEYS[3] end
  return KEYS[4]
end
local function pad(s, n) return string.rep('0', n - #s) .. s end
-- Index members sort by creation time, then id, as strings: listing newest
-- first is ZREVRANGEBYLEX and the last member seen is the cursor.
local function member(created) return pad(created, 15) .. ':' .. pad(id, 19) end
-- A pin's member of the merge request index: the merge request's pins are
-- one lexical range of it.
local function mrMember(mr) return pad(mr, 19) .. ':' .. pad(id, 19) end
-- Fields at their zero value are not stored (it saves memory per pin):
-- get answers '' for an absent field, and set deletes a field set to ''
-- (or to '0' for the flags and the merge request iid).
local zeroed = {mr = true, adopted = true, mrclosed = true}
local function get(f) return redis.call('HGET', pin, f) or '' end
-- One HSET and one HDEL for all the fields, not one call each.
local function set(...)
  local kv, puts, dels = {...}, {}, {}
  for i = 1, #kv, 2 do
    local f, v = kv[i], kv[i + 1]
    if v == '' or (zeroed[f] and v == '0') then
      dels[#dels + 1] = f
    else
      puts[#puts + 1] = f
      puts[#puts + 1] = v
    end
  end
  if #dels > 0 then redis.call('HDEL', pin, unpack(dels)) end
  if #puts > 0 then redis.call('HSET', pin, unpack(puts)) end
end
local function mrOf() local m = get('mr'); if m == '' then return '0' end; return m end
-- A deletion claim called off by a re-pin keeps its token behind a "!":
-- the deleter sees its claim gone, and later re-pins still know that a
-- delete may be in flight.
local function callOff(del)
  if del == '' or del:sub(1, 1) == '!' then return del end
  return '!' .. del
end
local function num(f) return tonumber(get(f)) or 0 end
-- The clocks a record is on follow from its state and stamps: every
-- transition ends with track(), so they never disagree with the hash.
local function track()
  local st = get('state')
  if st == 'pinned' or st == 'finished' then redis.call('ZADD', AGE, get('created'), id) else redis.call('ZREM', AGE, id) end
  if st == 'finished' then redis.call('ZADD', EXPIRES, get('expires'), id) else redis.call('ZREM', EXPIRES, id) end
  if st == 'deleted' then redis.call('ZADD', PURGE, get('deleted'), id) else redis.call('ZREM', PURGE, id) end
end
local function untrack()
  redis.call('ZREM', AGE, id)
  redis.call('ZREM', EXPIRES, id)
  redis.call('ZREM', PURGE, id)
end
-- When this record is next due (nil: on no clock).
local function dueAt(maxage)
  local at
  for _, c in ipairs(clocks(AGE, EXPIRES, PURGE, maxage)) do
    local s = redis.call('ZSCORE', c[1], id)
    if s then
      local t = tonumber(s) + c[2]
      if not at or t < at then at = t end
    end
  end
  return at
end
local function move(from, to)
  local m = member(get('created'))
  redis.call('ZREM', idx(from), m)
  redis.call('ZADD', idx(to), 0, m)
end
local function reply(status, flag, due)
  local d = ''
  if due then d = string.format('%d', due) end
  local r = {status, id, flag or '', d}
  local h = redis.call('HGETALL', pin)
  for i = 1, #h do r[#r + 1] = h[i] end
  return r
end
local function bare(status) return {status, id, '', ''} end
`

// pinScript records a pin after its ref exists at sha. It answers
// statusNew (no record, or a deleted one: a retried pipeline),
// statusReopened (finished -> pinned), statusExists (already pinned), or
// statusConflict (the record holds another SHA, the answer's pin shows it).
// The flag is "1" when a deletion was pending or had happened: the caller
// must then make sure the ref still exists.
//
// ARGV[2] sha  ARGV[3] merge request iid or "0"  ARGV[4] now
// ARGV[5] the computed merge's inputs or "" (kept by a new pin only: an
// existing one has the same SHA, so the same merge)
var pinScript = newPinScript(`
local sha, mr, now = ARGV[2], ARGV[3], ARGV[4]
local st = get('state')
if st == 'pinned' or st == 'finished' then
  if get('sha') ~= sha then return reply('conflict') end
  local claimed = get('del') ~= ''
  set('del', callOff(get('del')))
  if st == 'finished' then
    move('finished', 'pinned')
    set('state', 'pinned', 'finished', '', 'expires', '')
  end
  if mr ~= '0' and mrOf() == '0' then
    set('mr', mr)
    redis.call('ZADD', MRS, 0, mrMember(mr))
  end
  track()
  local status = 'exists'
  if st == 'finished' then status = 'reopened' end
  if claimed then return reply(status, '1') end
  return reply(status)
end
local was, del = '', callOff(get('del'))
if st == 'deleted' then
  was = '1'
  redis.call('ZREM', KEYS[4], member(get('created')))
  if mrOf() ~= '0' and mrOf() ~= mr then redis.call('ZREM', MRS, mrMember(mrOf())) end
end
set('sha', sha, 'mr', mr, 'state', 'pinned', 'created', now,
  'finished', '', 'expires', '', 'deleted', '', 'adopted', '0', 'mrclosed', '0', 'del', del, 'merge', ARGV[5])
redis.call('ZADD', KEYS[2], 0, member(now))
track()
if mr ~= '0' then redis.call('ZADD', MRS, 0, mrMember(mr)) end
return reply('new', was)
`)

// finishScript releases a pinned pin: finished, expiring after retention, or
// at once if its merge request was closed. A finished or deleted pin is left
// as it is (finishing twice keeps the first finished_at). Answers
// statusFinished, statusUnchanged, or statusNone when there is no record;
// the due time is when the pin must go under the policy in force.
//
// ARGV[2] now  ARGV[3] retention  ARGV[4] max-age
var finishScript = newPinScript(`
local now, retention, maxage = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local st = get('state')
if st == '' then return bare('none') end
if st ~= 'pinned' then return reply('unchanged', '', dueAt(maxage)) end
local expires = now + retention
if get('mrclosed') == '1' then expires = now end
move('pinned', 'finished')
set('state', 'finished', 'finished', ARGV[2], 'expires', string.format('%d', expires))
-- A called-off claim's deleter, if it still commits, finds no claim and
-- re-creates the ref either way.
if get('del'):sub(1, 1) == '!' then set('del', '') end
track()
return reply('finished', '', dueAt(maxage))
`)

// claimScript claims a pin for deletion with a token. Unless forced, only a
// due pin is claimed. Answers statusClaimed, statusNotDue, statusDeleted
// (nothing to delete: the caller may purge it) or statusNone (an id left on
// a clock without its record is taken off).
//
// ARGV[2] now  ARGV[3] max-age  ARGV[4] token  ARGV[5] "1" to force
var claimScript = newPinScript(`
local now, maxage = tonumber(ARGV[2]), tonumber(ARGV[3])
local st = get('state')
if st == '' then
  untrack()
  return bare('none')
end
if st == 'deleted' then return reply('deleted') end
if ARGV[5] ~= '1' then
  local d = dueAt(maxage)
  if not d or d > now then return reply('notdue', '', d) end
end
set('del', ARGV[4])
return reply('claimed')
`)

// commitDeleteScript marks a claimed pin deleted after its ref was deleted,
// if the claim still stands. Answers statusDeleted; statusReclaimed when a
// re-pin called the deletion off (the caller must re-create the ref);
// statusSuperseded when another deleter holds the claim now; statusNone
// without a record.
//
// ARGV[2] now  ARGV[3] token
var commitDeleteScript = newPinScript(`
local st = get('state')
if st == '' then return bare('none') end
local del = get('del')
if st == 'deleted' then
  -- A tombstone (see tombstoneScript) carries the claim of its deleter:
  -- the deletion is done now, which is what a sweep's listing is compared
  -- with.
  if del == ARGV[3] then
    set('del', '', 'deleted', ARGV[2])
    track()
  end
  return reply('deleted')
end
if del ~= ARGV[3] then
  if del == '' or del == '!' .. ARGV[3] then
    set('del', '')
    return reply('reclaimed')
  end
  return reply('superseded')
end
move(st, 'deleted')
set('state', 'deleted', 'deleted', ARGV[2], 'del', '')
track()
return reply('deleted')
`)

// purgeScript removes the record of a pin deleted longer than max-age ago.
// Answers statusPurged or statusKept.
//
// ARGV[2] now  ARGV[3] max-age
var purgeScript = newPinScript(`
local now, maxage = tonumber(ARGV[2]), tonumber(ARGV[3])
if get('state') ~= 'deleted' then return bare('kept') end
local d = dueAt(maxage)
if not d or d > now then return bare('kept') end
redis.call('ZREM', KEYS[4], member(get('created')))
untrack()
if mrOf() ~= '0' then redis.call('ZREM', MRS, mrMember(mrOf())) end
redis.call('DEL', pin)
return bare('purged')
`)

// adoptScript starts tracking a pipeline ref found on disk with no live
// record: a pinned pin, first seen now, that max-age will delete. A deleted
// record counts as no record only if it was deleted before the ref listing
// began (otherwise the listing saw the ref before this deletion). Answers
// statusAdopted or statusKnown.
//
// ARGV[2] sha  ARGV[3] now  ARGV[4] when the listing began
var adoptScript = newPinScript(`
local tombstoneGrace = ` + tombstoneGraceMS + `
local st = get('state')
if st ~= '' and st ~= 'deleted' then return bare('known') end
if st == 'deleted' then
  if num('deleted') >= tonumber(ARGV[4]) then return bare('known') end
  -- A tombstone whose deleter is still at work: the ref listed is the one
  -- being deleted. (A deleter that died leaves it adoptable after a while.)
  local del = get('del')
  if del ~= '' and del:sub(1, 1) ~= '!' and num('deleted') + tombstoneGrace > tonumber(ARGV[3]) then
    return bare('known')
  end
  redis.call('ZREM', KEYS[4], member(get('created')))
  if mrOf() ~= '0' then redis.call('ZREM', MRS, mrMember(mrOf())) end
end
set('sha', ARGV[2], 'mr', '0', 'state', 'pinned', 'created', ARGV[3],
  'finished', '', 'expires', '', 'deleted', '', 'adopted', '1', 'mrclosed', '0', 'del', '', 'merge', '')
redis.call('ZADD', KEYS[2], 0, member(ARGV[3]))
track()
return bare('adopted')
`)

// tombstoneGraceMS is how long a tombstone's claim keeps a sweep from
// adopting the ref it is deleting: longer than a git transaction may take
// (gitops' 60 s), short enough that a deleter that died does not hold the
// ref out of sight for long.
const tombstoneGraceMS = "120000"

// tombstoneScript records that a ref without a live pin is about to be
// deleted (DELETE of a ref made by hand, or whose record Redis lost): a
// deleted record stamped now, claimed with the deleter's token. A pin made
// meanwhile then finds a deleted record and re-creates its ref after the
// delete, and a sweep that listed the ref before the delete does not adopt
// it. Answers statusClaimed, or statusLive when a live pin exists now (the
// caller claims that one instead).
//
// ARGV[2] sha  ARGV[3] now  ARGV[4] token
var tombstoneScript = newPinScript(`
local st = get('state')
if st == 'pinned' or st == 'finished' then return reply('live') end
if st == 'deleted' then
  redis.call('ZREM', KEYS[4], member(get('created')))
else
  set('created', ARGV[3])
end
set('sha', ARGV[2], 'state', 'deleted', 'deleted', ARGV[3], 'del', ARGV[4])
redis.call('ZADD', KEYS[4], 0, member(get('created')))
track()
return reply('claimed')
`)

// pinTransition is one per-pin transition, as a script for one pin (Run) and
// one for many pins of a project in one call (RunMany's batches).
type pinTransition struct {
	one  *redis.Script
	many *redis.Script
}

func newPinScript(body string) pinTransition {
	return pinTransition{
		one:  redis.NewScript(luaPrelude + body),
		many: redis.NewScript(fmt.Sprintf(batchLua, luaPrelude+body)),
	}
}

// projectKeyCount is how many of a per-pin script's KEYS are the project's
// (all but the pin hash).
const projectKeyCount = 7

// batchLua runs a per-pin script over many pins of one project in one call,
// which saves Redis a script invocation per pin (a sweep claims, deletes and
// purges thousands at a time). The per-pin script runs as a function whose
// KEYS and ARGV are laid out as above, so it reads the same either way.
//
//	KEYS[1..7] idx:pinned, idx:finished, idx:deleted, age, expires, purge,
//	           the merge request index
//	KEYS[7+i] pin i's hash
//	ARGV[1] number of shared arguments (k)
//	ARGV[2] number of arguments of each pin (m)   ARGV[3..2+k] the shared ones
//	then per pin: its id and its m arguments
//
// Pin i's script sees ARGV = id, its own arguments, the shared ones.
const batchLua = `
local function one(KEYS, ARGV)
%s
end
local k, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS - 7 do
  local at = 2 + k + (i - 1) * (m + 1)
  local argv = {ARGV[at + 1]}
  for j = 1, m do argv[#argv + 1] = ARGV[at + 1 + j] end
  for j = 1, k do argv[#argv + 1] = ARGV[2 + j] end
  out[i] = one({KEYS[7 + i], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, argv)
end
return out
`

// batchArgs lays out KEYS and ARGV of a batch call (see batchLua).
func batchArgs(keys Keys, p Project, ids []PipelineID, perPin [][]any, shared []any) ([]string, []any) {
	kv := make([]string, 0, projectKeyCount+len(ids))
	kv = append(kv, keys.project(p)...)
	m := 0
	if len(perPin) > 0 {
		m = len(perPin[0])
	}
	argv := make([]any, 0, 2+len(shared)+len(ids)*(1+m))
	argv = append(argv, strconv.Itoa(len(shared)), strconv.Itoa(m))
	argv = append(argv, shared...)
	for i, id := range ids {
		kv = append(kv, keys.Pin(p, id))
		argv = append(argv, id.String())
		if m > 0 {
			argv = append(argv, perPin[i]...)
		}
	}
	return kv, argv
}

// dueScript answers up to limit ids of records due now, over every clock.
//
// KEYS[1..3] the clocks age, expires, purge
// ARGV[1] now  ARGV[2] max-age  ARGV[3] limit
var dueScript = redis.NewScript(luaDueRule + `
local now, maxage, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out, seen = {}, {}
for _, c in ipairs(clocks(KEYS[1], KEYS[2], KEYS[3], maxage)) do
  if #out >= limit then break end
  local upTo = string.format('%d', now - c[2])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', c[1], '-inf', upTo, 'LIMIT', 0, limit - #out)) do
    if not seen[id] then
      seen[id] = true
      out[#out + 1] = id
    end
  end
end
return out
`)

// nextDueScript answers when the project next has a record due (Unix ms),
// or "" when none is on any clock.
//
// KEYS[1..3] the clocks age, expires, purge
// ARGV[1] max-age
var nextDueScript = redis.NewScript(luaDueRule + `
local at
for _, c in ipairs(clocks(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))) do
  local first = redis.call('ZRANGE', c[1], 0, 0, 'WITHSCORES')
  if #first == 2 then
    local t = tonumber(first[2]) + c[2]
    if not at or t < at then at = t end
  end
end
if not at then return '' end
return string.format('%d', at)
`)

// closeScript marks every pin of a merge request closed: finished pins expire
// now, pinned ones will expire as soon as they finish. The caller read the
// merge request's pins first and hands over their hashes; if the merge
// request has a pin the caller did not name (pinned in between), the script
// changes nothing and answers {"stale"}, and the caller reads again.
// Otherwise it answers "ok" and the ids of the pins it marked.
//
// KEYS[1] the merge request index  KEYS[2] the expires clock
// KEYS[2+i] the hash of pin i
// ARGV[1] now  ARGV[2] the index's lower bound  ARGV[3] its upper bound
// ARGV[3+i] the id of pin i
var closeScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local named = {}
for i = 4, #ARGV do named[ARGV[i]] = KEYS[i - 1] end
for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])) do
  local id = string.match(m, ':0*(%d+)$')
  if not named[id] then return {'stale'} end
end
local out = {'ok'}
for i = 4, #ARGV do
  local id, pin = ARGV[i], KEYS[i - 1]
  local st = redis.call('HGET', pin, 'state')
  if st == 'pinned' then
    redis.call('HSET', pin, 'mrclosed', '1')
    out[#out + 1] = id
  elseif st == 'finished' then
    redis.call('HSET', pin, 'mrclosed', '1')
    if tonumber(redis.call('HGET', pin, 'expires')) > now then
      redis.call('HSET', pin, 'expires', ARGV[1])
      redis.call('ZADD', KEYS[2], ARGV[1], id)
    end
    out[#out + 1] = id
  end
end
return out
`)

// dropProjectScript removes what is left of a project that is gone (its
// repository absent): if it has no live pin, the deleted records the caller
// read from idx:deleted and named go. Answers 1 while records are left, 0
// once every key of the project is gone, -1 when a live pin keeps it.
//
// KEYS[1..7] idx:pinned, idx:finished, idx:deleted, age, expires, purge,
// the merge request index  KEYS[8] the reconcile marker
// KEYS[8+i] the hash of record i
// ARGV[i] the idx:deleted member of record i
var dropProjectScript = redis.NewScript(`
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) > 0 then return -1 end
for i = 1, #ARGV do
  local m, pin = ARGV[i], KEYS[8 + i]
  if redis.call('ZREM', KEYS[3], m) == 1 then
    local id = string.match(m, ':0*(%d+)$')
    local mr = redis.call('HGET', pin, 'mr')
    if mr then
      redis.call('ZREM', KEYS[7], string.rep('0', 19 - #mr) .. mr .. ':' .. string.rep('0', 19 - #id) .. id)
    end
    redis.call('DEL', pin)
  end
end
if redis.call('ZCARD', KEYS[3]) > 0 then return 1 end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
return 0
`)
