-- Compliance semantics (#16): evidence outcomes and auditor verdicts, workflow changes,
-- certification snapshots, auditor findings, and tenants' not-applicable marks on
-- baseline requirement -> control links. Projected from the ledger; RLS FORCEd.

ALTER TABLE gov_evidence
    ADD COLUMN outcome        text NOT NULL DEFAULT 'pass',
    ADD COLUMN review_verdict text,
    ADD COLUMN review_reason  text,
    ADD COLUMN reviewed_by    text,
    ADD COLUMN reviewed_at    timestamptz,
    ADD CONSTRAINT gov_evidence_outcome CHECK (outcome IN ('pass', 'fail', 'informational')),
    ADD CONSTRAINT gov_evidence_verdict CHECK (review_verdict IN ('accepted', 'rejected'));

ALTER TABLE gov_compliance_workflows
    ADD COLUMN certification   jsonb,
    ADD COLUMN certified_until date;

CREATE TABLE gov_compliance_changes (
    tenant_id    uuid        NOT NULL,
    workflow_id  uuid        NOT NULL,
    ledger_seq   bigint      NOT NULL,
    change       jsonb       NOT NULL,
    reason       text        NOT NULL,
    actor        text        NOT NULL,
    at           timestamptz NOT NULL,
    CONSTRAINT gov_compliance_changes_pkey PRIMARY KEY (tenant_id, workflow_id, ledger_seq)
);

CREATE TABLE gov_compliance_findings (
    tenant_id     uuid        NOT NULL,
    workflow_id   uuid        NOT NULL,
    finding_id    uuid        NOT NULL,
    title         text        NOT NULL,
    owner         text        NOT NULL,
    due_date      date        NOT NULL,
    raised_by     text        NOT NULL,
    raised_at     timestamptz NOT NULL,
    raised_seq    bigint      NOT NULL,
    closed_by_evidence uuid,
    closed_by     text,
    closed_at     timestamptz,
    closed_seq    bigint,
    CONSTRAINT gov_compliance_findings_pkey PRIMARY KEY (tenant_id, workflow_id, finding_id)
);

CREATE TABLE gov_control_mapping_exclusions (
    tenant_id       uuid        NOT NULL,
    regulation      text        NOT NULL,
    requirement_id  text        NOT NULL,
    control_id      text        NOT NULL,
    rationale       text        NOT NULL,
    actor           text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    ledger_seq      bigint      NOT NULL,
    CONSTRAINT gov_control_mapping_exclusions_pkey PRIMARY KEY (tenant_id, regulation, requirement_id, control_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['gov_compliance_changes', 'gov_compliance_findings', 'gov_control_mapping_exclusions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY gov_tenant_isolation ON %I USING (tenant_id = gov_current_tenant()) '
                       'WITH CHECK (tenant_id = gov_current_tenant())', t);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO gov_app', t);
    END LOOP;
END $$;
