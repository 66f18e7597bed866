-- CREATE+DELETE pairs. A name is deleted only after its 201 came back, on whichever connection asks next,
-- so a DELETE never overtakes its CREATE. Names are unique per run (BENCH_PREFIX), thread and counter;
-- each create sets env_name and file_path too, so every uniqueness index is written and checked.
-- BENCH_DATA holds one writer token per line; a user gets at most (connections / writers) + 1 in flight.
local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local tokens, owner = {}, {}
local queue, head, tail = {}, 1, 0
local counter = 0
local value = string.rep("v", 100)
local prefix

created, deleted, unexpected = 0, 0, 0
setup = report.setup
done = report.done

function init(args)
  for line in io.lines(os.getenv("BENCH_DATA")) do
    if line ~= "" then tokens[#tokens + 1] = line end
  end
  prefix = os.getenv("BENCH_PREFIX") .. "_" .. (thread_id or 0)
end

function request()
  if head <= tail then
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("DELETE", "/api/v2/users/me/secrets/" .. item[2], { ["Coder-Session-Token"] = item[1] })
  end
  counter = counter + 1
  local token = tokens[counter % #tokens + 1]
  local name = prefix .. "_" .. counter
  owner[name] = token
  local body = string.format(
    '{"name":"%s","value":"%s","description":"benchmark pair","env_name":"%s","file_path":"/bench/%s"}',
    name, value, name, name)
  return wrk.format("POST", "/api/v2/users/me/secrets",
    { ["Coder-Session-Token"] = token, ["Content-Type"] = "application/json" }, body)
end

-- Any other status is an error; the harness counts those as requests - created - deleted.
-- `unexpected` counts 201s whose name was not ours (so they were never deleted).
function response(status, headers, body)
  if status == 201 then
    created = created + 1
    local name = body:match('"name"%s*:%s*"([^"]*)"')
    local token = name and owner[name]
    if token then
      owner[name] = nil
      tail = tail + 1
      queue[tail] = { token, name }
    else
      unexpected = unexpected + 1
    end
  elseif status == 204 then
    deleted = deleted + 1
  end
end
