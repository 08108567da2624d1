-- wrk script: HTTP/1.1 pipelining. Each write carries DEPTH copies of the
-- request (default 16, the TechEmpower plaintext depth); wrk counts every
-- response it parses, so req/s is responses per second.
--   wrk -t1 -c256 -d10s -s pipeline.lua http://127.0.0.1:8080/plaintext -- 16

local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local reqs = {}
  for i = 1, depth do
    reqs[i] = wrk.format(nil, nil) -- method, path and headers of the URL
  end
  batch = table.concat(reqs)
end

function request()
  return batch
end
