/**
 * The three Lua scripts that make the store atomic on the server, and the EVALSHA-with-EVAL-fallback
 * call that runs them on any ioredis client (a plain one or a Cluster) without adding commands to it.
 *
 * A key's value is one string: `h<token>` while leased (PX = the lease), `d<token>` once completed
 * (PX = the ttl). The token is the fence: unique to one successful claim, so `complete` and `release`
 * act only while the value still carries the caller's token. Each script touches one key, so the store
 * works unchanged on Redis Cluster.
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * ARGV: token, lease ms. Returns 'new' | 'done' | 'held'. A value carrying the caller's own token means
 * this very claim was applied once already and its reply was lost (a client re-sending after a
 * reconnect): it is still the caller's, so 'new' again.
 */
export const CLAIM = script(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'h' .. ARGV[1], 'PX', ARGV[2])
  return 'new'
end
if v == 'h' .. ARGV[1] then return 'new' end
if string.sub(v, 1, 1) == 'd' then return 'done' end
return 'held'
`);

/**
 * ARGV: token ('' when this store holds no claim on the key), ttl ms. Returns 'ok', or what stands in
 * the way: 'h' (another holder's lease) or 'd' (another holder's completion). A key nobody holds any
 * more (the caller's lease ran out and no one took it) is completed: no one else can be running it.
 */
export const COMPLETE = script(`
local v = redis.call('GET', KEYS[1])
if v and v ~= 'h' .. ARGV[1] and v ~= 'd' .. ARGV[1] then
  return string.sub(v, 1, 1)
end
redis.call('SET', KEYS[1], 'd' .. ARGV[1], 'PX', ARGV[2])
return 'ok'
`);

/** ARGV: token. Deletes the key only while it is the caller's lease; returns 1 if it did. */
export const RELEASE = script(`
if redis.call('GET', KEYS[1]) == 'h' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`);

export type RedisClient = Redis | Cluster;

/**
 * Runs a script by its hash; a server that has not seen it yet (fresh start, SCRIPT FLUSH, another
 * cluster node) answers NOSCRIPT, and EVAL then sends the source and caches it for the next call.
 */
export async function run(client: RedisClient, s: Script, key: string, args: string[]): Promise<unknown> {
  try {
    return await client.evalsha(s.sha, 1, key, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
      return client.eval(s.source, 1, key, ...args);
    }
    throw err;
  }
}
