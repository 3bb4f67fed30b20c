-- Argo CD health of the CanopyConfiguration (canopy.dev/v1alpha1), from the
-- BadConfiguration condition canopy writes (True: a configured kind cannot be
-- propagated; the message names it and its fix). Lua 5.1, as Argo CD runs it.
local hs = {}
local bad = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "BadConfiguration" then
      bad = c
    end
  end
end
if bad == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to report the configuration's BadConfiguration condition"
elseif obj.metadata.generation ~= nil and bad.observedGeneration ~= nil
    and bad.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to read generation " .. tostring(obj.metadata.generation)
elseif bad.status == "True" then
  hs.status = "Degraded"
  hs.message = tostring(bad.reason) .. ": " .. tostring(bad.message)
else
  hs.status = "Healthy"
  hs.message = tostring(bad.message)
end
return hs
