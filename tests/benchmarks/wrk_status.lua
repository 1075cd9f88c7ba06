-- wrk -s tests/benchmarks/wrk_status.lua ...: when wrk's failed answers came, by status.
--
-- wrk itself prints totals only ("Non-2xx or 3xx responses: N"). This script counts, per whole
-- second of wall clock (os.time(), epoch seconds), every answer and each status that is not
-- 2xx, and done() prints them after wrk's own report as one JSON line per second:
--
--   greenlight-wrk-second {"t": 1765098000, "n": 412, "status": {"503": 3}}
--
-- then one line with wrk's own error counters (its summary's; these have no per-event hook in
-- wrk 4.x, so they are totals, not placed in time) and its request count:
--
--   greenlight-wrk-errors {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 0,
--                          "requests": 51234}
--
-- response() runs for every answer (in each thread's own Lua state): it reads the status only,
-- never the body or the headers. tests/benchmarks/wrk_timeline.py parses the lines.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Flat tables only: wrk 4.1's thread:get() copies a nested table wrongly (its
-- script_copy_value pops one value too many) and crashes. Both are globals, for thread:get().
function init(args)
   answers = {} -- [epoch second] = answers in that second
   statuses = {} -- [epoch second * 1000 + status] = answers of that status (not 2xx)
end

function response(status, headers, body)
   local t = os.time()
   answers[t] = (answers[t] or 0) + 1
   if status < 200 or status > 299 then
      local k = t * 1000 + status
      statuses[k] = (statuses[k] or 0) + 1
   end
end

local function add(into, from)
   for k, n in pairs(from or {}) do
      into[k] = (into[k] or 0) + n
   end
end

function done(summary, latency, requests)
   local all, failed = {}, {}
   for _, thread in ipairs(threads) do
      add(all, thread:get("answers"))
      add(failed, thread:get("statuses"))
   end
   local by_second = {}
   for k, n in pairs(failed) do
      local t = math.floor(k / 1000)
      by_second[t] = by_second[t] or {}
      table.insert(by_second[t], string.format('"%.0f": %.0f', k - t * 1000, n))
   end
   local order = {}
   for t in pairs(all) do
      table.insert(order, t)
   end
   table.sort(order)
   for _, t in ipairs(order) do
      local codes = by_second[t] or {}
      table.sort(codes)
      io.write(string.format('greenlight-wrk-second {"t": %.0f, "n": %.0f, "status": {%s}}\n',
                             t, all[t], table.concat(codes, ", ")))
   end
   local e = summary.errors
   io.write(string.format('greenlight-wrk-errors {"connect": %.0f, "read": %.0f, "write": %.0f, '
                          .. '"status": %.0f, "timeout": %.0f, "requests": %.0f}\n',
                          e.connect, e.read, e.write, e.status, e.timeout, summary.requests))
end
