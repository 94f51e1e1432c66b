-- track.lua: a wrk script that tracks single impressions.
--
-- Each request is POST /api/v1/impressions with the body
--
--   {"campaign_id":"<campaign>","user_id":"u<n>"}
--
-- where n cycles over 0 .. users-1. Every thread starts its cycle at a
-- different offset (spread by the golden ratio, so any number of threads
-- lands far apart), so threads send different users: the first `users`
-- requests of a run are counted, and later ones are duplicates of earlier
-- ones until the dedup window expires.
--
-- Usage:
--
--   wrk -t1 -c64 -d10s -s loadtest/wrk/track.lua http://127.0.0.1:8080 -- [campaign] [users]
--
--   campaign  id of an existing campaign (default "wrk")
--   users     number of distinct users to cycle over (default 1000000)
--
-- The campaign must exist first, for example:
--
--   curl -X POST http://127.0.0.1:8080/api/v1/campaigns \
--     -d '{"id":"wrk","name":"wrk","start_time":"2020-01-01T00:00:00Z"}'
--
-- No response() function is defined, because defining one makes wrk parse
-- every response body. wrk still counts statuses of 400 and above, and
-- done() prints that count alongside its own "Non-2xx or 3xx responses".

local next_tid = 0

-- setup runs in the main Lua state once per thread, before it starts.
function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

local campaign = "wrk"
local users = 1000000
local n = 0

-- init runs in each thread's own Lua state with the arguments after "--".
function init(args)
   if args[1] ~= nil and args[1] ~= "" then
      campaign = args[1]
   end
   if args[2] ~= nil then
      users = tonumber(args[2]) or error("users must be a number, got " .. args[2])
      if users < 1 then
         error("users must be at least 1")
      end
   end
   local id = tid or 0
   n = math.floor(id * users * 0.6180339887498949) % users
   wrk.method = "POST"
   wrk.path = "/api/v1/impressions"
   wrk.headers["Content-Type"] = "application/json"
end

local prefix, suffix

function request()
   if prefix == nil then
      prefix = '{"campaign_id":"' .. campaign .. '","user_id":"u'
      suffix = '"}'
   end
   local body = prefix .. string.format("%d", n) .. suffix
   n = n + 1
   if n >= users then
      n = 0
   end
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   io.write(string.format("track.lua: %d requests, %d with status >= 400, %d socket errors (connect %d, read %d, write %d, timeout %d)\n",
      summary.requests, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
