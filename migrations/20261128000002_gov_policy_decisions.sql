-- Decision records (projected from PolicyEvaluated ledger entries) and the policy's
-- input-logging mode.

ALTER TABLE gov_governance_policies ADD COLUMN input_logging text NOT NULL DEFAULT 'full';

CREATE TABLE gov_policy_decisions (
    tenant_id       uuid        NOT NULL,
    decision_id     uuid        NOT NULL,
    policy_id       uuid        NOT NULL,
    policy_version  integer     NOT NULL,
    engine          text        NOT NULL,
    rule            text,
    input_sha256    text        NOT NULL,
    input           jsonb,
    result          jsonb,
    defined         boolean     NOT NULL,
    allowed         boolean,
    latency_ms      double precision NOT NULL,
    actor           text        NOT NULL,
    decided_at      timestamptz NOT NULL,
    ledger_seq      bigint      NOT NULL,
    CONSTRAINT gov_policy_decisions_pkey PRIMARY KEY (tenant_id, decision_id)
);
CREATE INDEX gov_policy_decisions_policy_time ON gov_policy_decisions (tenant_id, policy_id, decided_at DESC);
CREATE INDEX gov_policy_decisions_time ON gov_policy_decisions (tenant_id, decided_at DESC);

ALTER TABLE gov_policy_decisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_policy_decisions FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_policy_decisions
    USING (tenant_id = gov_current_tenant()) WITH CHECK (tenant_id = gov_current_tenant());

REVOKE ALL ON gov_policy_decisions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON gov_policy_decisions TO gov_app;
