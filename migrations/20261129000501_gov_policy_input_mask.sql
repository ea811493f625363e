-- The input fields a policy's decision records keep out (PolicyCreated.input_mask);
-- NULL when the policy masks nothing.
ALTER TABLE gov_governance_policies ADD COLUMN input_mask jsonb;
