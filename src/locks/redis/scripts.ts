import { createHash } from "node:crypto";
import { recordToJSON, type LeaderElectionRecord } from "../../election/record.js";

/**
 * The Lua scripts of the Redis lock. Each runs atomically on the server, so a read and the write that
 * depends on it can never interleave with another client's write: no read-modify-write race exists.
 *
 * KEYS[1] is the lease key (the record JSON, with a server-side expiry), KEYS[2] the fencing counter
 * (no expiry). Both carry the same `{hash tag}`, so they live in one Cluster slot.
 */

export interface LuaScript {
  source: string;
  sha1: string;
}

function script(source: string): LuaScript {
  return { source, sha1: createHash("sha1").update(source).digest("hex") };
}

/** Atomic read: `[record JSON or nil, fencing counter or nil, PTTL of the lease key in ms]`. */
export const READ_SCRIPT = script(`
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[1])}
`);

/**
 * Atomic write. ARGV:
 *   1 op: create | acquire | renew | release
 *   2 expected lease value ('' = absent)  3 expected fencing counter ('' = absent)
 *     (ignored by create, which requires both keys to be absent)
 *   4, 5 the record JSON before and after its leaderTransitions value
 *   6 expiry of the lease key in ms   7 channel   8 message of an acquisition or release (the new holder;
 *     a renewal publishes the stored value instead, so watchers observe it without reading)
 *   9 term: create/renew/release store it as is; acquire stores max(INCR counter, ARGV[9])
 * Returns `{1, stored value, counter}` on success and `{0, current value, counter}` on a conflict.
 */
export const WRITE_SCRIPT = script(`
local cur = redis.call('GET', KEYS[1])
local fence = redis.call('GET', KEYS[2])
local op = ARGV[1]
if op == 'create' then
  if cur or fence then return {0, cur, fence} end
elseif (cur or '') ~= ARGV[2] or (fence or '') ~= ARGV[3] then
  return {0, cur, fence}
end
local term = tonumber(ARGV[9])
if op == 'acquire' then
  local next = redis.call('INCR', KEYS[2])
  if next < term then
    next = term
    redis.call('SET', KEYS[2], string.format('%d', next))
  end
  term = next
elseif op == 'create' then
  redis.call('SET', KEYS[2], ARGV[9])
end
local value = ARGV[4] .. string.format('%d', term) .. ARGV[5]
redis.call('SET', KEYS[1], value, 'PX', ARGV[6])
if op == 'renew' then redis.call('PUBLISH', ARGV[7], value) else redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return {1, value, redis.call('GET', KEYS[2])}
`);

const TERM_MARKER = '"leaderTransitions":0';

/**
 * The record's JSON split around its leaderTransitions value, so the script can insert the term it
 * assigns. The marker can only match the real key: a string value containing it is escaped by JSON.
 */
export function encodeRecordAroundTerm(record: LeaderElectionRecord): { head: string; tail: string } {
  const json = JSON.stringify(recordToJSON({ ...record, leaderTransitions: 0 }, 3));
  const at = json.indexOf(TERM_MARKER);
  if (at < 0) throw new Error("record JSON lacks leaderTransitions (a bug in recordToJSON?)");
  const split = at + TERM_MARKER.length - 1;
  return { head: json.slice(0, split), tail: json.slice(split + 1) };
}
