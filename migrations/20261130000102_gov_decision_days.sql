-- Decisions per policy and day (the UTC day their ledger entries were recorded), by
-- outcome: what the dashboard's recent decisions sum, a few rows per policy and day rather
-- than a scan of every decision. Kept by the system-evidence projector, which reads every
-- decision; `projections rebuild` recomputes it from the ledger like every read model.
CREATE TABLE gov_decision_days (
    tenant_id  uuid   NOT NULL,
    policy_id  uuid   NOT NULL,
    day        date   NOT NULL,
    allowed    bigint NOT NULL,
    denied     bigint NOT NULL,
    undefined  bigint NOT NULL,
    CONSTRAINT gov_decision_days_pkey PRIMARY KEY (tenant_id, policy_id, day)
);
CREATE INDEX gov_decision_days_day ON gov_decision_days (tenant_id, day);

-- The decisions already projected, up to where the system-evidence projector stands (it
-- counts those after). Exact when the decisions projector is at least as far, as when the
-- service stopped after catching up; a rebuild recomputes it in any case. The migrating
-- role owns the tables but does not bypass row-level security, which the decisions force:
-- lifted for this statement, in this migration's transaction, and forced again below.
ALTER TABLE gov_policy_decisions NO FORCE ROW LEVEL SECURITY;
INSERT INTO gov_decision_days (tenant_id, policy_id, day, allowed, denied, undefined)
SELECT tenant_id, policy_id, (decided_at AT TIME ZONE 'UTC')::date,
       count(*) FILTER (WHERE allowed), count(*) FILTER (WHERE NOT allowed), count(*) FILTER (WHERE allowed IS NULL)
  FROM gov_policy_decisions
 WHERE ledger_seq <= coalesce((SELECT position FROM gov_projection_positions WHERE projection = 'system_evidence'), 0)
 GROUP BY 1, 2, 3;
ALTER TABLE gov_policy_decisions FORCE ROW LEVEL SECURITY;

ALTER TABLE gov_decision_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_decision_days FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_decision_days
    USING (tenant_id = (SELECT gov_current_tenant())) WITH CHECK (tenant_id = (SELECT gov_current_tenant()));
REVOKE ALL ON gov_decision_days FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON gov_decision_days TO gov_app;
