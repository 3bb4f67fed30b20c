-- Argo CD health of a canopy Tenant (canopy.dev/v1alpha1), from the Ready condition
-- canopy writes. Lua 5.1, as Argo CD runs it.
local hs = {}
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to report the Tenant's Ready condition"
  return hs
end
-- A condition written for an older spec says nothing about the current one.
if obj.metadata.generation ~= nil and ready.observedGeneration ~= nil
    and ready.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to reconcile generation " .. tostring(obj.metadata.generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
-- RootNamespaceMissing: canopy is creating the root namespace. The other reasons
-- (RootExcluded, RootClaimed, RootInsideAnotherTenant) need a person to change the spec.
if ready.reason == "RootNamespaceMissing" then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = tostring(ready.reason) .. ": " .. tostring(ready.message)
return hs
