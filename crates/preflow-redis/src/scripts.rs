//! The Lua scripts. Each touches the one key it is given, so it runs in one cluster slot;
//! they are sent with `EVALSHA` and loaded on `NOSCRIPT` by [`redis::Script`].
//!
//! Redis Lua numbers are doubles, exact up to 2^53. The scripts never compute on raw
//! epoch nanoseconds: the SpikeArrest TAT is stored as a decimal string of absolute
//! nanoseconds, split into seconds and nanoseconds when read, and only the difference to
//! `TIME` (bounded by the tolerance) is computed on. Quota windows compare milliseconds.

/// Counts one failed client authentication on a throttle key, as
/// [`preflow_oauth::ThrottleEntry::fail`] does (the two must agree).
///
/// `KEYS[1]` the entry hash (`f` failures, `l` last failure, `w` wait until; seconds);
/// `ARGV[1]` now, `ARGV[2]` free failures, `ARGV[3]` base delay, `ARGV[4]` longest delay,
/// `ARGV[5]` forget-after. Expires when the entry would be forgotten. Returns `{f, l, w}`.
pub(crate) const THROTTLE_FAIL: &str = r"
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local maxd = tonumber(ARGV[4])
local forget = tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'f', 'l', 'w')
local f = tonumber(h[1]) or 0
local l = tonumber(h[2]) or 0
local w = tonumber(h[3]) or 0
if w <= now and now - l >= forget then
  f = 0
  l = 0
  w = 0
end
f = f + 1
l = now
if f > free then
  local e = f - free - 1
  if e > 62 then e = 62 end
  local d = base * (2 ^ e)
  if d > maxd then d = maxd end
  w = now + d
end
redis.call('HSET', KEYS[1], 'f', f, 'l', l, 'w', string.format('%d', w))
local until_ = l + forget
if w > until_ then until_ = w end
redis.call('EXPIREAT', KEYS[1], string.format('%d', until_))
return {f, l, w}
";

/// SpikeArrest GCRA on the Redis clock.
///
/// `KEYS[1]` the TAT key; `ARGV[1]` the increment `weight·T` (ns), `ARGV[2]` the tolerance
/// (ns), `ARGV[3]` `1` to add the increment unconditionally (asynchronous flush).
/// Returns `{allowed, rel}`: `rel` is the TAT after the operation minus `TIME`, in ns,
/// and at least 0.
pub(crate) const GCRA: &str = r"
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_n = tonumber(t[2]) * 1000
local diff = 0
local v = redis.call('GET', KEYS[1])
if v then
  local len = string.len(v)
  local ts = 0
  local tn = tonumber(v)
  if len > 9 then
    ts = tonumber(string.sub(v, 1, len - 9))
    tn = tonumber(string.sub(v, len - 8))
  end
  if ts and tn then
    diff = (ts - now_s) * 1000000000 + (tn - now_n)
  end
end
if diff < 0 then diff = 0 end
local inc = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local new = diff + inc
if ARGV[3] == '1' or new <= tol then
  if inc > 0 then
    local total = now_n + new
    local carry = math.floor(total / 1000000000)
    local s = now_s + carry
    local n = total - carry * 1000000000
    local ms = s * 1000 + math.ceil(n / 1000000)
    redis.call('SET', KEYS[1], string.format('%d%09d', s, n), 'PXAT', string.format('%d', ms))
  end
  return {1, new}
end
return {0, diff}
";

/// Quota fixed window (`INCRBY` guarded by the limit, `PEXPIREAT` the window end).
///
/// `KEYS[1]` the window hash; `ARGV[1]` now (ms), `ARGV[2]` the end of the window to open
/// (ms), `ARGV[3]` the same end in ns (returned verbatim), `ARGV[4]` weight, `ARGV[5]`
/// limit, `ARGV[6]` `1` to count unconditionally (asynchronous flush).
/// Returns `{allowed, used, exceeded, end_ns}`.
pub(crate) const QUOTA: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', k, 'e', 'u', 'x', 'en')
local e = tonumber(h[1])
local used = 0
local exc = 0
local en = ARGV[3]
if (not e) or e <= now then
  e = tonumber(ARGV[2])
  if e <= now then e = now + 1 end
  redis.call('DEL', k)
  redis.call('HSET', k, 'e', string.format('%d', e), 'en', en, 'u', 0, 'x', 0)
  redis.call('PEXPIREAT', k, string.format('%d', e))
else
  used = tonumber(h[2]) or 0
  exc = tonumber(h[3]) or 0
  en = h[4] or en
end
local w = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
if ARGV[6] == '1' or used + w <= limit then
  used = redis.call('HINCRBY', k, 'u', w)
  return {1, used, exc, en}
end
exc = redis.call('HINCRBY', k, 'x', w)
return {0, used, exc, en}
";

/// Quota rolling window: one hash field per slot.
///
/// `KEYS[1]` the hash; `ARGV[1]` the slot index of now, `ARGV[2]` how many slots before it
/// the window covers, `ARGV[3]` weight, `ARGV[4]` limit, `ARGV[5]` time to live (ms),
/// `ARGV[6]` `1` to count unconditionally (asynchronous flush).
/// Returns `{allowed, used, exceeded}`.
pub(crate) const ROLLING: &str = r"
local k = KEYS[1]
local idx = tonumber(ARGV[1])
local field = ARGV[1]
local span = tonumber(ARGV[2])
local n = redis.call('HGET', k, 'n')
if n and tonumber(n) > idx then
  idx = tonumber(n)
  field = n
end
local all = redis.call('HGETALL', k)
local sum = 0
local exc = 0
for i = 1, #all, 2 do
  local f = all[i]
  if f == 'x' then
    exc = tonumber(all[i + 1]) or 0
  elseif f ~= 'n' then
    local s = tonumber(f)
    if (not s) or s < idx - span then
      redis.call('HDEL', k, f)
    else
      sum = sum + (tonumber(all[i + 1]) or 0)
    end
  end
end
if sum == 0 then exc = 0 end
local w = tonumber(ARGV[3])
local allowed = 0
if ARGV[6] == '1' or sum + w <= tonumber(ARGV[4]) then
  redis.call('HINCRBY', k, field, w)
  sum = sum + w
  allowed = 1
else
  exc = exc + w
end
redis.call('HSET', k, 'n', field, 'x', exc)
redis.call('PEXPIRE', k, ARGV[5])
return {allowed, sum, exc}
";

/// Stores a token or code record: `KEYS[1]` the hash, `ARGV[1]` the record (JSON),
/// `ARGV[2]` expiry (ms since the epoch) or `0` for none. Replaces any previous record.
pub(crate) const PUT_RECORD: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
if ARGV[2] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
";

/// Adds a token digest to a grant set: `KEYS[1]` the set, `ARGV[1]` the member,
/// `ARGV[2]` the token's expiry (ms) or `0` for none. The set lives as long as its
/// longest-lived token.
pub(crate) const GRANT_ADD: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ARGV[2] == '0' then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 or ttl >= 0 then
  local at = tonumber(ARGV[2])
  local cur = redis.call('PEXPIRETIME', KEYS[1])
  if existed == 0 or cur < at then
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  end
end
return 1
";

/// Revokes a token: `KEYS[1]` the token hash, `ARGV[1]` the revocation time (s).
/// Returns 1 if the token existed and was not revoked yet, else 0.
pub(crate) const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HSETNX', KEYS[1], 'rev', ARGV[1])
end
return 0
";

/// Takes an authorization code: `KEYS[1]` the code hash. Returns `{}` for an unknown
/// code, else `{record, used_before}` and marks it used.
pub(crate) const TAKE_CODE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'rec', 'used')
if not h[1] then return {} end
redis.call('HSET', KEYS[1], 'used', '1')
if h[2] then return {h[1], '1'} end
return {h[1], '0'}
";

/// Replaces a token's record if it is still the one read: `KEYS[1]` the token hash,
/// `ARGV[1]` the record read, `ARGV[2]` the new record. Returns 1 when replaced, 0 when
/// the record changed (or vanished) meanwhile. Expiry and revocation are untouched.
pub(crate) const REPLACE_RECORD: &str = r"
if redis.call('HGET', KEYS[1], 'rec') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'rec', ARGV[2])
  return 1
end
return 0
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) throttle_fail: redis::Script,
    pub(crate) gcra: redis::Script,
    pub(crate) quota: redis::Script,
    pub(crate) rolling: redis::Script,
    pub(crate) put_record: redis::Script,
    pub(crate) grant_add: redis::Script,
    pub(crate) revoke: redis::Script,
    pub(crate) take_code: redis::Script,
    pub(crate) replace_record: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            throttle_fail: redis::Script::new(THROTTLE_FAIL),
            gcra: redis::Script::new(GCRA),
            quota: redis::Script::new(QUOTA),
            rolling: redis::Script::new(ROLLING),
            put_record: redis::Script::new(PUT_RECORD),
            grant_add: redis::Script::new(GRANT_ADD),
            revoke: redis::Script::new(REVOKE),
            take_code: redis::Script::new(TAKE_CODE),
            replace_record: redis::Script::new(REPLACE_RECORD),
        }
    }
}
