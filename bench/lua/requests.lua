-- Reads (and idempotent writes): each request is a random line of the file named by BENCH_DATA,
-- "method<TAB>path<TAB>token<TAB>body" (body may be empty). Requests are formatted once, at start.
local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local prepared = {}

setup = report.setup
done = report.done

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  for line in io.lines(os.getenv("BENCH_DATA")) do
    local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = { ["Coder-Session-Token"] = token }
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    prepared[#prepared + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  return prepared[math.random(#prepared)]
end
