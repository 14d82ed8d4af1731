"""The Lua scripts behind cluster presence: each one atomic, each one round trip.

Keys, under the cluster's prefix ``P``:

- ``P:nodes`` (set) the nodes known to the cluster; ``P:node:<id>`` a node's heartbeat,
  expiring after the node TTL. A node is alive while its heartbeat key exists.
- ``P:conns`` (hash node → connections), ``P:actor:<actor>`` (hash node → connections).
- ``P:room:<room>`` (hash ``<node>|<actor>`` → connections), ``P:rooms`` (set of rooms with
  entries), ``P:typing:<room>`` (hash actor → node).
- ``P:roomnodes:<room>`` (hash node → its distinct actors there) and ``P:roomactors:<room>``
  (hash actor → the nodes holding it there): kept with ``P:room:<room>``, so that a join, a
  leave or a room's size costs the same in a room of 5 and of 5,000 (a reconnect storm joins
  the room's every member at once) while every node with entries in the room is alive; with
  one dead and not yet reaped, the room is walked as before.
- ``P:announced:<actor>`` (set of conversation ids told the actor is online).
- ``P:n:<id>:rooms`` / ``P:n:<id>:actors`` (sets): what a node wrote, for its reaper.

Every figure read counts live nodes only, so a dead node stops counting as soon as its
heartbeat expires; the first live node to see it gone then removes its entries (``REAP``) and
reports who left, for the presence events.

Every script takes ``ARGV[1]`` = prefix, ``ARGV[2]`` = this node's id, then its own arguments.
"""

from __future__ import annotations

PRELUDE = r"""
local P = ARGV[1]
local ME = ARGV[2]
local alive_cache = {}

local function alive(node)
  if node == ME then return true end
  local known = alive_cache[node]
  if known == nil then
    known = redis.call('EXISTS', P .. 'node:' .. node) == 1
    alive_cache[node] = known
  end
  return known
end

-- Distinct live actors in a room, the live connections of `actor` there, the set of live
-- actors, and all live connections.
local function room_view(room, actor)
  local fields = redis.call('HGETALL', P .. 'room:' .. room)
  local seen, distinct, mine, connections = {}, 0, 0, 0
  for i = 1, #fields, 2 do
    local field, count = fields[i], tonumber(fields[i + 1])
    local sep = string.find(field, '|', 1, true)
    local node, who = string.sub(field, 1, sep - 1), string.sub(field, sep + 1)
    if count > 0 and alive(node) then
      connections = connections + count
      if not seen[who] then seen[who] = true; distinct = distinct + 1 end
      if who == actor then mine = mine + count end
    end
  end
  return distinct, mine, seen, connections
end

-- The room's distinct live actors and the live connections of `actor` there (`''`: none),
-- from the per-node and per-actor tallies while every node with entries there is alive:
-- nodes are few, members many. Otherwise the room is walked.
local function room_count(room, actor)
  local mine = 0
  for _, node in ipairs(redis.call('HKEYS', P .. 'roomnodes:' .. room)) do
    if not alive(node) then
      local distinct, walked = room_view(room, actor)
      return distinct, walked
    end
    if actor ~= '' then
      mine = mine + (tonumber(redis.call('HGET', P .. 'room:' .. room, node .. '|' .. actor)) or 0)
    end
  end
  return redis.call('HLEN', P .. 'roomactors:' .. room), mine
end

-- `node` came to hold `actor` in `room` (delta 1: its first connection there) or no longer
-- does (-1): the tallies `room_count` reads.
local function tally(room, node, actor, delta)
  local nodes, actors = P .. 'roomnodes:' .. room, P .. 'roomactors:' .. room
  if redis.call('HINCRBY', nodes, node, delta) <= 0 then redis.call('HDEL', nodes, node) end
  if redis.call('HINCRBY', actors, actor, delta) <= 0 then redis.call('HDEL', actors, actor) end
end

-- A room with no entries left: its keys go.
local function vacate_if_empty(room)
  if redis.call('EXISTS', P .. 'room:' .. room) == 0 then
    redis.call('SREM', P .. 'rooms', room)
    redis.call('DEL', P .. 'typing:' .. room, P .. 'roomnodes:' .. room,
               P .. 'roomactors:' .. room)
  end
end

-- Live connections of `actor` across the cluster.
local function actor_total(actor)
  local fields = redis.call('HGETALL', P .. 'actor:' .. actor)
  local total = 0
  for i = 1, #fields, 2 do
    if alive(fields[i]) then total = total + tonumber(fields[i + 1]) end
  end
  return total
end

-- Remove every entry `node` wrote. With `effects`, also say which actors left which rooms and
-- which went offline (taking their announced conversations).
local function purge(node, effects)
  local departures, offline = {}, {}
  local prefix = node .. '|'
  for _, room in ipairs(redis.call('SMEMBERS', P .. 'n:' .. node .. ':rooms')) do
    local key = P .. 'room:' .. room
    local fields = redis.call('HKEYS', key)
    local gone = {}
    -- Entries a node wrote with scripts that kept no tallies were never counted in them: none
    -- is taken off for them (that would take off another node's count of the same actor).
    local tallied = redis.call('HEXISTS', P .. 'roomnodes:' .. room, node) == 1
    for _, field in ipairs(fields) do
      if string.sub(field, 1, #prefix) == prefix then
        redis.call('HDEL', key, field)
        local who = string.sub(field, #prefix + 1)
        gone[who] = true
        if tallied then tally(room, node, who, -1) end
      end
    end
    redis.call('HDEL', P .. 'roomnodes:' .. room, node)
    local typing = redis.call('HGETALL', P .. 'typing:' .. room)
    for i = 1, #typing, 2 do
      if typing[i + 1] == node then redis.call('HDEL', P .. 'typing:' .. room, typing[i]) end
    end
    vacate_if_empty(room)
    if effects then
      for who in pairs(gone) do
        local distinct, mine = room_count(room, who)
        if mine == 0 then table.insert(departures, {room, who, distinct}) end
      end
    end
  end
  for _, actor in ipairs(redis.call('SMEMBERS', P .. 'n:' .. node .. ':actors')) do
    redis.call('HDEL', P .. 'actor:' .. actor, node)
    if effects and actor_total(actor) == 0 then
      local key = P .. 'announced:' .. actor
      table.insert(offline, {actor, redis.call('SMEMBERS', key)})
      redis.call('DEL', key)
    end
  end
  redis.call('HDEL', P .. 'conns', node)
  redis.call('DEL', P .. 'n:' .. node .. ':rooms', P .. 'n:' .. node .. ':actors')
  return departures, offline
end
"""

CONNECT = PRELUDE + r"""
local actor = ARGV[3]
redis.call('HINCRBY', P .. 'actor:' .. actor, ME, 1)
redis.call('SADD', P .. 'n:' .. ME .. ':actors', actor)
redis.call('HINCRBY', P .. 'conns', ME, 1)
if actor_total(actor) == 1 then return 1 end
return 0
"""

DISCONNECT = PRELUDE + r"""
local actor = ARGV[3]
local key = P .. 'actor:' .. actor
if redis.call('HEXISTS', key, ME) == 0 then return 0 end
if redis.call('HINCRBY', key, ME, -1) <= 0 then
  redis.call('HDEL', key, ME)
  redis.call('SREM', P .. 'n:' .. ME .. ':actors', actor)
end
if redis.call('HINCRBY', P .. 'conns', ME, -1) <= 0 then redis.call('HDEL', P .. 'conns', ME) end
if actor_total(actor) == 0 then return 1 end
return 0
"""

ENTER = PRELUDE + r"""
local room, actor = ARGV[3], ARGV[4]
if redis.call('HINCRBY', P .. 'room:' .. room, ME .. '|' .. actor, 1) == 1 then
  tally(room, ME, actor, 1)
end
redis.call('SADD', P .. 'rooms', room)
redis.call('SADD', P .. 'n:' .. ME .. ':rooms', room)
local distinct, mine = room_count(room, actor)
if mine == 1 then return {1, distinct} end
return {0, distinct}
"""

EXIT = PRELUDE + r"""
local room, actor = ARGV[3], ARGV[4]
local key, field = P .. 'room:' .. room, ME .. '|' .. actor
if redis.call('HEXISTS', key, field) == 0 then
  local distinct = room_count(room, actor)
  return {0, distinct}
end
if redis.call('HINCRBY', key, field, -1) <= 0 then
  redis.call('HDEL', key, field)
  tally(room, ME, actor, -1)
end
local distinct, mine = room_count(room, actor)
if mine == 0 then redis.call('HDEL', P .. 'typing:' .. room, actor) end
vacate_if_empty(room)
if mine == 0 then return {1, distinct} end
return {0, distinct}
"""

ROOM_SIZE = PRELUDE + r"""
local distinct = room_count(ARGV[3], '')
return distinct
"""

IS_ONLINE = PRELUDE + r"""
if actor_total(ARGV[3]) > 0 then return 1 end
return 0
"""

SET_TYPING = PRELUDE + r"""
local room, actor, typing = ARGV[3], ARGV[4], ARGV[5]
local _, mine = room_count(room, actor)
if typing == '1' and mine > 0 then
  redis.call('HSET', P .. 'typing:' .. room, actor, ME)
else
  redis.call('HDEL', P .. 'typing:' .. room, actor)
end
return 0
"""

ANNOUNCE = PRELUDE + r"""
local key = P .. 'announced:' .. ARGV[3]
redis.call('SADD', key, ARGV[4])
redis.call('EXPIRE', key, 86400)
return 0
"""

TAKE_ANNOUNCED = PRELUDE + r"""
local key = P .. 'announced:' .. ARGV[3]
local members = redis.call('SMEMBERS', key)
redis.call('DEL', key)
return members
"""

STATS = PRELUDE + r"""
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', P .. 'rooms')) do
  local users, _, seen, connections = room_view(room, '')
  local typists = 0
  local typing = redis.call('HGETALL', P .. 'typing:' .. room)
  for i = 1, #typing, 2 do
    if seen[typing[i]] and alive(typing[i + 1]) then typists = typists + 1 end
  end
  if connections > 0 then table.insert(out, {room, users, typists, connections}) end
end
local total = 0
local conns = redis.call('HGETALL', P .. 'conns')
for i = 1, #conns, 2 do
  if alive(conns[i]) then total = total + tonumber(conns[i + 1]) end
end
return cjson.encode({total = total, rooms = out})
"""

HEARTBEAT = PRELUDE + r"""
local previous = redis.call('SET', P .. 'node:' .. ME, '1', 'PX', ARGV[3], 'GET')
redis.call('SADD', P .. 'nodes', ME)
if previous then return 1 end
return 0
"""

# Rewrite this node's entries from its own memory (after Redis lost them or the node was
# taken for dead): ARGV[3] is the JSON snapshot from ClusterPresence.snapshot().
RESYNC = PRELUDE + r"""
local state = cjson.decode(ARGV[3])
purge(ME, false)
redis.call('SADD', P .. 'nodes', ME)
local total = 0
for actor, count in pairs(state.actors) do
  redis.call('HSET', P .. 'actor:' .. actor, ME, count)
  redis.call('SADD', P .. 'n:' .. ME .. ':actors', actor)
  total = total + count
end
if total > 0 then redis.call('HSET', P .. 'conns', ME, total) end
for room, counts in pairs(state.rooms) do
  for actor, count in pairs(counts) do
    redis.call('HSET', P .. 'room:' .. room, ME .. '|' .. actor, count)
    tally(room, ME, actor, 1)
  end
  redis.call('SADD', P .. 'rooms', room)
  redis.call('SADD', P .. 'n:' .. ME .. ':rooms', room)
end
for room, typists in pairs(state.typing) do
  for _, actor in ipairs(typists) do redis.call('HSET', P .. 'typing:' .. room, actor, ME) end
end
for actor, conversations in pairs(state.announced) do
  for _, id in ipairs(conversations) do
    redis.call('SADD', P .. 'announced:' .. actor, id)
  end
  redis.call('EXPIRE', P .. 'announced:' .. actor, 86400)
end
return 0
"""

# Claim a dead node (ARGV[3]) and remove its entries; nil when it is alive or already taken.
REAP = PRELUDE + r"""
local node = ARGV[3]
if redis.call('EXISTS', P .. 'node:' .. node) == 1 then return false end
if redis.call('SREM', P .. 'nodes', node) == 0 then return false end
local departures, offline = purge(node, true)
return cjson.encode({departures = departures, offline = offline})
"""

# A node leaving on purpose: drop its heartbeat and entries, saying who left.
LEAVE = PRELUDE + r"""
redis.call('DEL', P .. 'node:' .. ME)
redis.call('SREM', P .. 'nodes', ME)
local departures, offline = purge(ME, true)
return cjson.encode({departures = departures, offline = offline})
"""
