//! The Lua scripts the cluster runs in Redis, where a decision must be atomic and use Redis' clock (`TIME`), never
//! the replicas' clocks. Keys are passed as `KEYS` so the scripts stay correct under a key prefix.

use std::sync::LazyLock;

use redis::Script;

/// Redis' clock in ms, as `now`.
macro_rules! now {
    () => {
        "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// `owns(members, token key, node, token, service, now)`: whether this incarnation's membership is live and `node`
/// is the service's rendezvous owner among the live members (the weight function of [`super::ownership`]);
/// `member(token key, token)`: whether this incarnation's membership is live.
macro_rules! owns {
    () => {
        r"
local function member(token_key, token)
  return redis.call('GET', token_key) == token
end
local function owns(members_key, token_key, node, token, service, now)
  if not member(token_key, token) then return false end
  local best, owner = nil, nil
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', members_key, '(' .. now, '+inf')) do
    local w = redis.sha1hex(m .. '\n' .. service)
    if best == nil or w > best then best = w; owner = m end
  end
  return owner == node
end
"
    };
}

/// Heartbeat: `KEYS[1]` the members (sorted set: node → expiry in Redis ms), `KEYS[2]` this node's token key;
/// `ARGV` node, token, lease in ms (how long the entry lives without a new beat), and `1` if the node may (re)register
/// when its membership is gone, `0` if not (a replica that was a member registers again only once it has taken on
/// what the cluster holds: see `membership.rs`). Refuses a node name another live replica holds; drops expired
/// members. Answers `1` if this incarnation's membership had expired (or never existed) before this beat, else `0`,
/// followed by the live members.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now!(),
        r"
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[2] then
  return redis.error_reply('AEGISNODE node name ' .. ARGV[1] .. ' is in use by another live replica')
end
local lapsed = '0'
if not held then lapsed = '1' end
if held or ARGV[4] == '1' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local answer = {lapsed}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do answer[#answer + 1] = m end
return answer
"
    ))
});

/// Fencing: may this node act for a service now? `KEYS[1]` the members, `KEYS[2]` this node's token key; `ARGV`
/// node, token, service. 1 when this incarnation's membership is live and it is the service's owner, else 0.
pub static FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now!(),
        owns!(),
        "if owns(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], now) then return 1 end\nreturn 0\n"
    ))
});

/// Queues an alert notification in the cluster's outbox, fenced: `KEYS[1]` the members, `KEYS[2]` this node's token
/// key, `KEYS[3]` the outbox stream, `KEYS[4]` the shared alerts; `ARGV` node, token, service, then the entry's
/// idempotency key, target, content type, headers (JSON), body, creation time, and the alert's fingerprint and
/// `startsAt` (ms). 1 if queued; 0 if this node does not own the service (the owner raised the alert itself); 2 if
/// the cluster carries another cycle of the alert (raised by the owner while this node was cut off); 3 if this node
/// is not a member now (it keeps the entry until it is one again).
pub static FORWARD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now!(),
        owns!(),
        r"
if not member(KEYS[2], ARGV[2]) then return 3 end
if not owns(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], now) then return 0 end
local shared = redis.call('HGET', KEYS[4], ARGV[3])
if shared then
  for _, a in ipairs(cjson.decode(shared)) do
    if a.fingerprint == ARGV[10] and type(a.starts_at_ms) == 'number' and a.starts_at_ms ~= tonumber(ARGV[11]) then
      return 2
    end
  end
end
redis.call('XADD', KEYS[3], '*', 's', ARGV[3], 'k', ARGV[4], 't', ARGV[5], 'c', ARGV[6], 'h', ARGV[7], 'b', ARGV[8],
  'at', ARGV[9])
return 1
"
    ))
});

/// Shares the alerts of a service, fenced: `KEYS[1]` the members, `KEYS[2]` this node's token key, `KEYS[3]` the
/// hash of alerts (service → JSON list); `ARGV` node, token, service, JSON (`[]` removes the entry). 1 if written,
/// 0 if this node does not own the service.
pub static SHARE_ALERTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now!(),
        owns!(),
        r"
if not owns(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], now) then return 0 end
if ARGV[4] == '[]' then redis.call('HDEL', KEYS[3], ARGV[3]) else redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) end
return 1
"
    ))
});

/// Publishes a service's shared state: `KEYS[1]` the state hash (service → JSON), `KEYS[2]` the hash of when it was
/// written (Redis ms), `KEYS[3]` the change stream; `ARGV` service, JSON. The stream tells the other replicas what
/// to read again; it is capped.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now!(),
        r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 's', ARGV[1])
return now
"
    ))
});

/// Reads a service's shared state: `KEYS` as for [`PUBLISH`]; `ARGV` service. Answers `{json, age in ms}` (the
/// age by Redis' clock, so an open breaker's remaining time needs no synchronised clocks), or nil.
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r"
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return nil end
",
        now!(),
        r"
local at = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or now)
return {json, math.max(0, now - at)}
"
    ))
});
