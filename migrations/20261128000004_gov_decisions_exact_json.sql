-- Decision inputs and results are kept as the exact JSON text (json), not jsonb: jsonb
-- stores numbers as numerics and prints them back in a form that need not parse as the
-- number that went in (f64::MAX comes back as 309 digits, which overflows a double).
-- Rows converted here keep jsonb's rendering; `governance-engine projections rebuild` rewrites
-- them from the ledger's exact text.
ALTER TABLE gov_policy_decisions
    ALTER COLUMN input TYPE json USING input::json,
    ALTER COLUMN result TYPE json USING result::json;
