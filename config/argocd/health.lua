-- Argo CD health check for kube-baseline.dev/SecurityBaseline (kstatus semantics).
--
-- Health reflects whether the operator has reconciled the baseline, not whether the
-- cluster complies with it: drift (Compliant=False) is reported in the message of a
-- Healthy baseline, never as Degraded, so sync waves and app-of-apps rollouts never stall
-- on findings. Compliance is for alerts (config/prometheus) and the baseline's status.
--
--   no status yet, or status.observedGeneration < metadata.generation  -> Progressing
--   Reconciling=True                                                   -> Progressing
--   Stalled=True (InvalidSpec, Forbidden: needs a human)               -> Degraded
--   Ready=True                                                         -> Healthy
--   anything else                                                      -> Progressing
--
-- A condition whose own observedGeneration is older than metadata.generation describes
-- an earlier spec and is ignored. The order follows kstatus (sigs.k8s.io/cli-utils):
-- generation first, then Reconciling, then Stalled.
local hs = {}

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for kube-baseline to reconcile the baseline"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for kube-baseline to reconcile generation " .. tostring(generation)
  if observed ~= nil then
    hs.message = hs.message .. " (last reconciled: " .. tostring(observed) .. ")"
  end
  return hs
end

-- The current conditions by type.
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type ~= nil then
      local stale = generation ~= nil and condition.observedGeneration ~= nil
        and condition.observedGeneration < generation
      if not stale then
        conditions[condition.type] = condition
      end
    end
  end
end

local function isTrue(conditionType)
  local condition = conditions[conditionType]
  return condition ~= nil and condition.status == "True"
end

local function describe(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

if isTrue("Reconciling") then
  hs.status = "Progressing"
  hs.message = describe(conditions["Reconciling"], "Reconciling")
  return hs
end

if isTrue("Stalled") then
  hs.status = "Degraded"
  hs.message = describe(conditions["Stalled"], "Stalled")
  return hs
end

if isTrue("Ready") then
  local drift = obj.status.driftTotal
  if drift == nil then
    drift = 0
  end
  hs.status = "Healthy"
  if drift == 0 then
    hs.message = "Ready; no drift"
  elseif drift == 1 then
    hs.message = "Ready; 1 drift finding"
  else
    hs.message = "Ready; " .. tostring(drift) .. " drift findings"
  end
  return hs
end

hs.status = "Progressing"
if conditions["Ready"] ~= nil then
  hs.message = describe(conditions["Ready"], "Waiting for the baseline to become Ready")
else
  hs.message = "Waiting for the baseline to become Ready"
end
return hs
