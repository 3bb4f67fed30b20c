-- Argo CD health of a canopy SubnamespaceAnchor (canopy.dev/v1alpha1), from the
-- status.status and Ready condition canopy writes. Lua 5.1, as Argo CD runs it.
local hs = {}
local state = nil
local ready = nil
if obj.status ~= nil then
  state = obj.status.status
  if obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == "Ready" then
        ready = c
      end
    end
  end
end
local why = ""
if ready ~= nil then
  why = tostring(ready.reason) .. ": " .. tostring(ready.message)
end
if state == "Ok" then
  hs.status = "Healthy"
  hs.message = why
elseif state == "Conflict" or state == "Forbidden" then
  -- Conflict: a namespace of that name exists and is not this anchor's child.
  -- Forbidden: the name is excluded, or the tenant's maxNamespaces is reached.
  hs.status = "Degraded"
  hs.message = state .. ": " .. why
else
  -- No status yet, or Missing: canopy has not created the subnamespace yet.
  hs.status = "Progressing"
  hs.message = "Waiting for canopy to create the subnamespace " .. tostring(obj.metadata.name)
end
return hs
