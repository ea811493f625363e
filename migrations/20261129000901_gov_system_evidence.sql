-- System evidence (#17): the decisions of policy versions that check CSF controls, rolled
-- up per tenant, policy, control and UTC day (projections/src/system_evidence.rs). Every
-- table is rebuilt from the ledger by `projections rebuild`; no column depends on when the
-- projector ran, so a rebuild reproduces the rows exactly.

-- The checks each version declares (PolicyCreated / PolicyVersionAdded), kept by the
-- projector itself so that it never reads another projector's tables.
CREATE TABLE gov_system_evidence_checks (
    tenant_id   uuid    NOT NULL,
    policy_id   uuid    NOT NULL,
    version     integer NOT NULL,
    control_id  text    NOT NULL,
    rule        text,
    pass_when   text    NOT NULL CHECK (pass_when IN ('no_deny', 'all_allowed', 'decided')),
    ledger_seq  bigint  NOT NULL,
    CONSTRAINT gov_system_evidence_checks_pkey PRIMARY KEY (tenant_id, policy_id, version, control_id)
);

-- One version's counted decisions on one control and day.
CREATE TABLE gov_system_evidence_tallies (
    tenant_id   uuid    NOT NULL,
    policy_id   uuid    NOT NULL,
    control_id  text    NOT NULL,
    day         date    NOT NULL,
    version     integer NOT NULL,
    pass_when   text    NOT NULL,
    allowed     bigint  NOT NULL,
    denied      bigint  NOT NULL,
    undefined   bigint  NOT NULL,
    min_seq     bigint  NOT NULL,
    max_seq     bigint  NOT NULL,
    CONSTRAINT gov_system_evidence_tallies_pkey PRIMARY KEY (tenant_id, policy_id, control_id, day, version)
);

-- The roll-up: one row of system evidence per (tenant, policy, control, day).
CREATE TABLE gov_system_evidence (
    tenant_id    uuid      NOT NULL,
    evidence_id  uuid      NOT NULL,
    policy_id    uuid      NOT NULL,
    control_id   text      NOT NULL,
    day          date      NOT NULL,
    allowed      bigint    NOT NULL,
    denied       bigint    NOT NULL,
    undefined    bigint    NOT NULL,
    versions     integer[] NOT NULL,
    min_seq      bigint    NOT NULL,
    max_seq      bigint    NOT NULL,
    outcome      text      NOT NULL CHECK (outcome IN ('pass', 'fail')),
    CONSTRAINT gov_system_evidence_pkey PRIMARY KEY (tenant_id, policy_id, control_id, day),
    CONSTRAINT gov_system_evidence_id UNIQUE (tenant_id, evidence_id)
);
CREATE INDEX gov_system_evidence_day ON gov_system_evidence (tenant_id, day);

-- The ledger seq of every decision a roll-up counts (the bundle proves them, or a sample).
CREATE TABLE gov_system_evidence_decisions (
    tenant_id   uuid    NOT NULL,
    policy_id   uuid    NOT NULL,
    control_id  text    NOT NULL,
    day         date    NOT NULL,
    seq         bigint  NOT NULL,
    CONSTRAINT gov_system_evidence_decisions_pkey PRIMARY KEY (tenant_id, policy_id, control_id, day, seq)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['gov_system_evidence_checks', 'gov_system_evidence_tallies', 'gov_system_evidence',
                             'gov_system_evidence_decisions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY gov_tenant_isolation ON %I USING (tenant_id = gov_current_tenant()) '
                       'WITH CHECK (tenant_id = gov_current_tenant())', t);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO gov_app', t);
    END LOOP;
END $$;
