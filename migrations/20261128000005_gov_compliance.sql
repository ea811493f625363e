-- Read models of compliance: workflows (with their transitions and not-applicable
-- justifications), evidence records, and tenant-defined requirement -> control mappings.
-- Projected from the ledger; RLS FORCEd on every table, as for the policies.

CREATE TABLE gov_compliance_workflows (
    tenant_id           uuid        NOT NULL,
    workflow_id         uuid        NOT NULL,
    regulation          text        NOT NULL,
    name                text        NOT NULL,
    scope_all           boolean     NOT NULL,
    scope_requirements  text[]      NOT NULL,
    owner               text        NOT NULL,
    audit_period_start  date        NOT NULL,
    audit_period_end    date        NOT NULL,
    due_date            date        NOT NULL,
    state               text        NOT NULL,
    created_by          text        NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    last_seq            bigint      NOT NULL,
    CONSTRAINT gov_compliance_workflows_pkey PRIMARY KEY (tenant_id, workflow_id)
);
CREATE INDEX gov_compliance_workflows_created ON gov_compliance_workflows (tenant_id, created_at, workflow_id);

CREATE TABLE gov_compliance_transitions (
    tenant_id    uuid        NOT NULL,
    workflow_id  uuid        NOT NULL,
    ledger_seq   bigint      NOT NULL,
    from_state   text        NOT NULL,
    to_state     text        NOT NULL,
    reason       text        NOT NULL,
    actor        text        NOT NULL,
    at           timestamptz NOT NULL,
    CONSTRAINT gov_compliance_transitions_pkey PRIMARY KEY (tenant_id, workflow_id, ledger_seq)
);

CREATE TABLE gov_compliance_not_applicable (
    tenant_id       uuid        NOT NULL,
    workflow_id     uuid        NOT NULL,
    requirement_id  text        NOT NULL,
    justification   text        NOT NULL,
    actor           text        NOT NULL,
    at              timestamptz NOT NULL,
    ledger_seq      bigint      NOT NULL,
    CONSTRAINT gov_compliance_not_applicable_pkey PRIMARY KEY (tenant_id, workflow_id, requirement_id)
);

CREATE TABLE gov_evidence (
    tenant_id        uuid        NOT NULL,
    evidence_id      uuid        NOT NULL,
    workflow_id      uuid        NOT NULL,
    kind             text        NOT NULL,
    description      text        NOT NULL,
    requirement_ids  text[]      NOT NULL,
    control_ids      text[]      NOT NULL,
    valid_from       date        NOT NULL,
    valid_until      date        NOT NULL,
    sha256           text        NOT NULL,
    size_bytes       bigint      NOT NULL,
    content_type     text        NOT NULL,
    filename         text,
    decision_id      uuid,
    status           text        NOT NULL,
    superseded_by    uuid,
    status_reason    text,
    submitted_by     text        NOT NULL,
    submitted_at     timestamptz NOT NULL,
    ledger_seq       bigint      NOT NULL,
    last_seq         bigint      NOT NULL,
    CONSTRAINT gov_evidence_pkey PRIMARY KEY (tenant_id, evidence_id)
);
CREATE INDEX gov_evidence_workflow ON gov_evidence (tenant_id, workflow_id);
CREATE INDEX gov_evidence_valid_until ON gov_evidence (tenant_id, valid_until) WHERE status = 'active';

CREATE TABLE gov_control_mappings (
    tenant_id       uuid        NOT NULL,
    regulation      text        NOT NULL,
    requirement_id  text        NOT NULL,
    control_id      text        NOT NULL,
    relation        text        NOT NULL,
    rationale       text        NOT NULL,
    actor           text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    ledger_seq      bigint      NOT NULL,
    CONSTRAINT gov_control_mappings_pkey PRIMARY KEY (tenant_id, regulation, requirement_id, control_id),
    CONSTRAINT gov_control_mappings_relation CHECK (relation IN ('subset', 'intersects', 'equal', 'superset'))
);
CREATE INDEX gov_control_mappings_control ON gov_control_mappings (tenant_id, control_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['gov_compliance_workflows', 'gov_compliance_transitions', 'gov_compliance_not_applicable',
                             'gov_evidence', 'gov_control_mappings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY gov_tenant_isolation ON %I USING (tenant_id = gov_current_tenant()) '
                       'WITH CHECK (tenant_id = gov_current_tenant())', t);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO gov_app', t);
    END LOOP;
END $$;
