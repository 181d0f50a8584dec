-- Argo CD resource health for tokens.frontegg-operator.io kinds (all four token kinds and both
-- environment kinds). The operator follows kstatus: a Ready condition plus observedGeneration.
local hs = {}
-- Failures the operator retries by itself: the resource is still converging.
local transient = { RateLimited = true, FronteggUnavailable = true, KubernetesError = true }

if obj.status ~= nil then
  local generation = obj.metadata and obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to act on the latest spec"
    return hs
  end
  if obj.status.conditions ~= nil then
    for _, condition in ipairs(obj.status.conditions) do
      if condition.type == "Ready" then
        if condition.status == "True" then
          hs.status = "Healthy"
        elseif transient[condition.reason] then
          hs.status = "Progressing"
        else
          hs.status = "Degraded"
        end
        hs.message = (condition.reason or "") .. ": " .. (condition.message or "")
        return hs
      end
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs
