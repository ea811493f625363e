-- What a policy version holds beside its main module (PolicyCreated / PolicyVersionAdded
-- `modules` and `data`): its further modules, as a JSON array of Rego sources, and its
-- data document, a JSON object. NULL when the version has none.
ALTER TABLE gov_governance_policy_versions ADD COLUMN modules jsonb;
ALTER TABLE gov_governance_policy_versions ADD COLUMN data jsonb;
