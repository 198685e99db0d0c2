-- Runs an Argo CD health.lua against decoded fixtures (see run-health-tests).
-- usage: lua5.1 health_test_runner.lua health.lua tests.json
local cjson = require("cjson")

local script_path, json_path = arg[1], arg[2]

local function read(path)
  local file, err = io.open(path, "r")
  if not file then
    error(err)
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- JSON null becomes nil, as in Argo CD (an unstructured object has no nulls to index).
local function strip_nulls(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    if v ~= cjson.null then
      out[k] = strip_nulls(v)
    end
  end
  return out
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

-- The libraries Argo CD opens for health scripts (util/lua): base, table, string, math
-- and a "safe" os with only the time functions. No io, no loading of files or code.
local function sandbox(obj)
  return {
    obj = obj,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, unpack = unpack, xpcall = xpcall, setmetatable = setmetatable,
    getmetatable = getmetatable, rawequal = rawequal, rawget = rawget, rawset = rawset,
    string = copy(string), table = copy(table), math = copy(math),
    os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime },
  }
end

local source = read(script_path)
local suite = cjson.decode(read(json_path))
local passed, failed = 0, 0

local function fail(name, why)
  failed = failed + 1
  print("FAIL " .. name .. ": " .. why)
end

for _, test in ipairs(suite.tests) do
  local name = "#" .. tostring(test.index) .. " " .. tostring(test.inputPath)
  if test.error ~= nil and test.error ~= cjson.null then
    fail(name, tostring(test.error))
  elseif type(test.status) ~= "string" then
    fail(name, "healthStatus.status is missing in health_test.yaml")
  else
    local chunk, load_err = loadstring(source, "=health.lua")
    if not chunk then
      fail(name, "health.lua does not compile: " .. tostring(load_err))
    else
      setfenv(chunk, sandbox(strip_nulls(test.obj)))
      local ok, result = pcall(chunk)
      if not ok then
        fail(name, "health.lua raised an error: " .. tostring(result))
      elseif type(result) ~= "table" then
        fail(name, "health.lua returned " .. type(result) .. ", not a table")
      else
        -- Argo CD compares the whole HealthStatus: a test without a message expects "".
        local want_message = test.message
        if want_message == nil or want_message == cjson.null then
          want_message = ""
        end
        local got_message = result.message
        if got_message == nil then
          got_message = ""
        end
        local problems = {}
        if result.status ~= test.status then
          table.insert(problems, string.format("status %q, want %q", tostring(result.status), test.status))
        end
        if got_message ~= want_message then
          table.insert(problems, string.format("message %q, want %q", tostring(got_message), tostring(want_message)))
        end
        if #problems == 0 then
          passed = passed + 1
          print("PASS " .. name .. ": " .. result.status .. " (" .. tostring(result.message) .. ")")
        else
          fail(name, table.concat(problems, "; "))
        end
      end
    end
  end
end

for _, path in ipairs(suite.unreferenced) do
  fail(path, "fixture is not referenced by any test in health_test.yaml")
end

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
