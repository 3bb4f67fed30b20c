-- Argo CD health of a canopy HierarchyConfiguration (canopy.dev/v1alpha1), from the
-- ActivitiesHalted and BadConfiguration conditions canopy writes. canopy writes a
-- condition only while there is a problem, so no condition means healthy.
-- Lua 5.1, as Argo CD runs it.
local hs = {}
local problems = {}
local stale = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if obj.metadata.generation ~= nil and c.observedGeneration ~= nil
        and c.observedGeneration < obj.metadata.generation then
      stale = true
    end
    if (c.type == "ActivitiesHalted" or c.type == "BadConfiguration") and c.status == "True" then
      table.insert(problems, c.type .. " (" .. tostring(c.reason) .. "): " .. tostring(c.message))
    end
  end
end
if stale then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to reconcile generation " .. tostring(obj.metadata.generation)
elseif #problems > 0 then
  hs.status = "Degraded"
  hs.message = table.concat(problems, "; ")
else
  hs.status = "Healthy"
  local parent = "none (a root)"
  if obj.spec ~= nil and obj.spec.parent ~= nil then
    parent = obj.spec.parent
  end
  hs.message = "parent: " .. parent
end
return hs
