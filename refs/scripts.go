package refs

import (
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Every per-pin script gets the same KEYS and the first two ARGV, so the
// shared Lua below can name them:
//
//	KEYS[1] pin hash   KEYS[2] idx:pinned   KEYS[3] idx:finished
//	KEYS[4] idx:deleted   KEYS[5] due (sorted set: id -> when to act, in ms)
//	ARGV[1] key base "<prefix>:{<project>}:"   ARGV[2] pipeline id
//
// All keys of one project share the hash tag {<project>}, so a script stays
// in one Redis Cluster slot. Times are Unix milliseconds as decimal strings;
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
const luaPrelude = `
local pin, base, id = KEYS[1], ARGV[1], ARGV[2]
local function idx(state)
  if state == 'pinned' then return KEYS[2] elseif state == 'finished' then return KEYS[3] end
  return KEYS[4]
end
local function pad(s, n) return string.rep('0', n - #s) .. s end
-- Index members sort by creation time, then id, as strings: listing newest
-- first is ZREVRANGEBYLEX and the last member seen is the cursor.
local function member(created) return pad(created, 15) .. ':' .. pad(id, 19) end
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
-- When the sweep must next look at this pin: deletion at expires_at, the
-- max-age safety net, or purging a deleted record.
local function due(maxage)
  local st = get('state')
  if st == 'deleted' then return num('deleted') + maxage end
  local limit = num('created') + maxage
  if st == 'finished' and num('expires') < limit then return num('expires') end
  return limit
end
local function move(from, to)
  local m = member(get('created'))
  redis.call('ZREM', idx(from), m)
  redis.call('ZADD', idx(to), 0, m)
end
local function reply(status, extra)
  local r = {status, extra or ''}
  local h = redis.call('HGETALL', pin)
  for i = 1, #h do r[#r + 1] = h[i] end
  return r
end
`

// pinScript records a pin after its ref exists at sha. It answers "new" (no
// record, or a deleted one: a retried pipeline), "reopened" (finished ->
// pinned), "exists" (already pinned), or "conflict" (the record holds
// another SHA). Extra is "1" when a deletion was pending or had happened: the
// caller must then make sure the ref still exists.
//
// ARGV[3] sha  ARGV[4] merge request iid or "0"  ARGV[5] now  ARGV[6] max-age
// ARGV[7] the computed merge's inputs or "" (kept by a new pin only: an
// existing one has the same SHA, so the same merge)
var pinScript = newPinScript(`
local sha, mr, now, maxage = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local st = get('state')
if st == 'pinned' or st == 'finished' then
  if get('sha') ~= sha then return reply('conflict', get('sha')) end
  local claimed = get('del') ~= ''
  set('del', callOff(get('del')))
  if st == 'finished' then
    move('finished', 'pinned')
    set('state', 'pinned', 'finished', '', 'expires', '')
  end
  if mr ~= '0' and mrOf() == '0' then
    set('mr', mr)
    redis.call('SADD', base .. 'mr:' .. mr, id)
  end
  redis.call('ZADD', KEYS[5], due(maxage), id)
  local status = 'exists'
  if st == 'finished' then status = 'reopened' end
  if claimed then return reply(status, '1') end
  return reply(status, '0')
end
local was, del = '0', callOff(get('del'))
if st == 'deleted' then
  was = '1'
  redis.call('ZREM', KEYS[4], member(get('created')))
  if mrOf() ~= '0' and mrOf() ~= mr then redis.call('SREM', base .. 'mr:' .. mrOf(), id) end
end
set('sha', sha, 'mr', mr, 'state', 'pinned', 'created', now,
  'finished', '', 'expires', '', 'deleted', '', 'adopted', '0', 'mrclosed', '0', 'del', del, 'merge', ARGV[7])
redis.call('ZADD', KEYS[2], 0, member(now))
redis.call('ZADD', KEYS[5], due(maxage), id)
if mr ~= '0' then redis.call('SADD', base .. 'mr:' .. mr, id) end
return reply('new', was)
`)

// finishScript releases a pinned pin: finished, expiring after retention, or
// at once if its merge request was closed. A finished or deleted pin is left
// as it is (finishing twice keeps the first finished_at). Answers "none" when
// there is no record.
//
// ARGV[3] now  ARGV[4] retention  ARGV[5] max-age
var finishScript = newPinScript(`
local now, retention, maxage = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local st = get('state')
if st == '' then return {'none', ''} end
if st ~= 'pinned' then return reply(st) end
local expires = now + retention
if get('mrclosed') == '1' then expires = now end
move('pinned', 'finished')
set('state', 'finished', 'finished', ARGV[3], 'expires', string.format('%d', expires))
-- A called-off claim's deleter, if it still commits, finds no claim and
-- re-creates the ref either way.
if get('del'):sub(1, 1) == '!' then set('del', '') end
redis.call('ZADD', KEYS[5], due(maxage), id)
return reply('finished')
`)

// claimScript claims a pin for deletion with a token. Unless forced, only a
// due pin is claimed (finished past expires_at, or older than max-age); a pin
// that is not due gets its due time corrected. Answers "claimed", "notdue",
// "deleted" (nothing to do) or "none".
//
// ARGV[3] now  ARGV[4] max-age  ARGV[5] token  ARGV[6] "1" to force
var claimScript = newPinScript(`
local now, maxage = tonumber(ARGV[3]), tonumber(ARGV[4])
local st = get('state')
if st == '' then
  redis.call('ZREM', KEYS[5], id)
  return {'none', ''}
end
if st == 'deleted' then return reply('deleted') end
if ARGV[6] ~= '1' then
  local d = due(maxage)
  if d > now then
    redis.call('ZADD', KEYS[5], d, id)
    return reply('notdue')
  end
end
set('del', ARGV[5])
return reply('claimed')
`)

// commitDeleteScript marks a claimed pin deleted after its ref was deleted,
// if the claim still stands. Answers "deleted"; "reclaimed" when a re-pin
// called the deletion off (the caller must re-create the ref); "superseded"
// when another deleter holds the claim now; "none" without a record.
//
// ARGV[3] now  ARGV[4] max-age  ARGV[5] token
var commitDeleteScript = newPinScript(`
local maxage = tonumber(ARGV[4])
local st = get('state')
if st == '' then return {'none', ''} end
local del = get('del')
if st == 'deleted' then
  -- A tombstone (see tombstoneScript) carries the claim of its deleter:
  -- the deletion is done now, which is what a sweep's listing is compared
  -- with.
  if del == ARGV[5] then
    set('del', '', 'deleted', ARGV[3])
    redis.call('ZADD', KEYS[5], due(maxage), id)
  end
  return reply('deleted')
end
if del ~= ARGV[5] then
  if del == '' or del == '!' .. ARGV[5] then
    set('del', '')
    return reply('reclaimed')
  end
  return reply('superseded')
end
move(st, 'deleted')
set('state', 'deleted', 'deleted', ARGV[3], 'del', '')
redis.call('ZADD', KEYS[5], due(maxage), id)
return reply('deleted')
`)

// purgeScript removes the record of a pin deleted longer than max-age ago.
// Answers "purged" or "kept".
//
// ARGV[3] now  ARGV[4] max-age
var purgeScript = newPinScript(`
local now, maxage = tonumber(ARGV[3]), tonumber(ARGV[4])
if get('state') ~= 'deleted' or due(maxage) > now then return {'kept', ''} end
redis.call('ZREM', KEYS[4], member(get('created')))
redis.call('ZREM', KEYS[5], id)
if mrOf() ~= '0' then redis.call('SREM', base .. 'mr:' .. mrOf(), id) end
redis.call('DEL', pin)
return {'purged', ''}
`)

// adoptScript starts tracking a pipeline ref found on disk with no live
// record: a pinned pin that max-age will delete. A deleted record counts as
// no record only if it was deleted before the ref listing began (otherwise
// the listing saw the ref before this deletion). Answers "adopted" or "known".
//
// ARGV[3] sha  ARGV[4] now  ARGV[5] max-age  ARGV[6] when the listing began
var adoptScript = newPinScript(`
local tombstoneGrace = ` + tombstoneGraceMS + `
local maxage = tonumber(ARGV[5])
local st = get('state')
if st ~= '' and st ~= 'deleted' then return {'known', ''} end
if st == 'deleted' then
  if num('deleted') >= tonumber(ARGV[6]) then return {'known', ''} end
  -- A tombstone whose deleter is still at work: the ref listed is the one
  -- being deleted. (A deleter that died leaves it adoptable after a while.)
  local del = get('del')
  if del ~= '' and del:sub(1, 1) ~= '!' and num('deleted') + tombstoneGrace > tonumber(ARGV[4]) then
    return {'known', ''}
  end
  redis.call('ZREM', KEYS[4], member(get('created')))
  if mrOf() ~= '0' then redis.call('SREM', base .. 'mr:' .. mrOf(), id) end
end
set('sha', ARGV[3], 'mr', '0', 'state', 'pinned', 'created', ARGV[4],
  'finished', '', 'expires', '', 'deleted', '', 'adopted', '1', 'mrclosed', '0', 'del', '', 'merge', '')
redis.call('ZADD', KEYS[2], 0, member(ARGV[4]))
redis.call('ZADD', KEYS[5], due(maxage), id)
return reply('adopted')
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
// it. Answers "claimed", or "live" when a live pin exists now (the caller
// claims that one instead).
//
// ARGV[3] sha  ARGV[4] now  ARGV[5] max-age  ARGV[6] token
var tombstoneScript = newPinScript(`
local maxage = tonumber(ARGV[5])
local st = get('state')
if st == 'pinned' or st == 'finished' then return reply('live') end
if st == 'deleted' then
  redis.call('ZREM', KEYS[4], member(get('created')))
else
  set('created', ARGV[4])
end
set('sha', ARGV[3], 'state', 'deleted', 'deleted', ARGV[4], 'del', ARGV[6])
redis.call('ZADD', KEYS[4], 0, member(get('created')))
redis.call('ZADD', KEYS[5], due(maxage), id)
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

// batchLua runs a per-pin script over many pins of one project in one call,
// which saves Redis a script invocation per pin (a sweep claims, deletes and
// purges thousands at a time). The per-pin script runs as a function whose
// KEYS and ARGV are laid out as above, so it reads the same either way.
//
//	KEYS[1..4] idx:pinned, idx:finished, idx:deleted, due; KEYS[4+i] pin i's hash
//	ARGV[1] key base   ARGV[2] number of shared arguments (k)
//	ARGV[3] number of arguments of each pin (m)   ARGV[4..3+k] the shared ones
//	then per pin: its id and its m arguments
//
// Pin i's script sees ARGV = base, id, its own arguments, the shared ones.
const batchLua = `
local function one(KEYS, ARGV)
%s
end
local base, k, m = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS - 4 do
  local at = 3 + k + (i - 1) * (m + 1)
  local argv = {base, ARGV[at + 1]}
  for j = 1, m do argv[#argv + 1] = ARGV[at + 1 + j] end
  for j = 1, k do argv[#argv + 1] = ARGV[3 + j] end
  out[i] = one({KEYS[4 + i], KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, argv)
end
return out
`

// batchArgs lays out KEYS and ARGV of a batch call (see batchLua).
func batchArgs(s *Store, p Project, ids []PipelineID, perPin [][]any, shared []any) ([]string, []any) {
	keys := make([]string, 0, 4+len(ids))
	keys = append(keys, s.indexKey(p, StatePinned), s.indexKey(p, StateFinished), s.indexKey(p, StateDeleted), s.dueKey(p))
	m := 0
	if len(perPin) > 0 {
		m = len(perPin[0])
	}
	argv := make([]any, 0, 3+len(shared)+len(ids)*(1+m))
	argv = append(argv, s.base(p), strconv.Itoa(len(shared)), strconv.Itoa(m))
	argv = append(argv, shared...)
	for i, id := range ids {
		keys = append(keys, s.pinKey(p, id))
		argv = append(argv, id.String())
		if m > 0 {
			argv = append(argv, perPin[i]...)
		}
	}
	return keys, argv
}

// closeScript marks every pin of a merge request closed: finished pins expire
// now, pinned ones will expire as soon as they finish. It answers the ids of
// the pins it marked.
//
// KEYS[1] the merge request's set of pipeline ids  KEYS[2] due
// ARGV[1] key base  ARGV[2] now  ARGV[3] max-age
var closeScript = redis.NewScript(`
local base, now, maxage = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local pin = base .. 'pin:' .. id
  local st = redis.call('HGET', pin, 'state')
  if st == 'pinned' then
    redis.call('HSET', pin, 'mrclosed', '1')
    out[#out + 1] = id
  elseif st == 'finished' then
    redis.call('HSET', pin, 'mrclosed', '1')
    local expires = tonumber(redis.call('HGET', pin, 'expires'))
    if expires > now then
      expires = now
      redis.call('HSET', pin, 'expires', ARGV[2])
    end
    local limit = tonumber(redis.call('HGET', pin, 'created')) + maxage
    if limit < expires then expires = limit end
    redis.call('ZADD', KEYS[2], expires, id)
    out[#out + 1] = id
  end
end
return out
`)
