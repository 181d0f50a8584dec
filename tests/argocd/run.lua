-- Runs docs/argocd/health.lua against Ready, failing and progressing objects.
-- Usage: lua5.4 tests/argocd/run.lua docs/argocd/health.lua
local health = assert(loadfile(arg[1]))

local function ready(status, reason, gen, observed)
  return {
    metadata = { generation = gen or 1 },
    status = {
      observedGeneration = observed or gen or 1,
      conditions = { { type = "Ready", status = status, reason = reason, message = "m" } },
    },
  }
end

local cases = {
  { "ready token", "Healthy", ready("True", "TokenReady") },
  { "ready environment", "Healthy", ready("True", "Authenticated") },
  { "bad credentials", "Degraded", ready("False", "Unauthorized") },
  { "secret conflict", "Degraded", ready("False", "SecretConflict") },
  { "tenant not allowed", "Degraded", ready("False", "TenantNotAllowed") },
  { "rate limited", "Progressing", ready("False", "RateLimited") },
  { "frontegg down", "Progressing", ready("False", "FronteggUnavailable") },
  { "stale generation", "Progressing", ready("True", "TokenReady", 3, 2) },
  { "no status yet", "Progressing", { metadata = { generation = 1 } } },
  { "status without conditions", "Progressing", { metadata = { generation = 1 }, status = {} } },
}

local failed = 0
for _, case in ipairs(cases) do
  obj = case[3]
  local hs = health()
  if hs.status == case[2] then
    print("ok   " .. case[1] .. " -> " .. hs.status)
  else
    failed = failed + 1
    print("FAIL " .. case[1] .. ": expected " .. case[2] .. ", got " .. tostring(hs.status))
  end
end
print(string.format("lua: %d passed, %d failed", #cases - failed, failed))
os.exit(failed == 0)
