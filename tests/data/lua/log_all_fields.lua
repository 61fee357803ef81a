-- After the guide's first example: every field of every event, logged to
-- a file with broker_log.
function init(conf)
  broker_log:set_parameters(3, conf.log_file)
end

function write(d)
  for k, v in pairs(d) do
    broker_log:info(1, k .. " => " .. tostring(v))
  end
  return true
end
