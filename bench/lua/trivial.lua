-- The trivial benchmark script: counts the events and acknowledges them.
local count = 0

function init(conf)
end

function write(e)
  count = count + 1
  return true
end
