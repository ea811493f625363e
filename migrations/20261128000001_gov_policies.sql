-- Read models of the Policy aggregate, projected from the ledger.
--
-- Applied by the owner/migrator role. The app role (gov_app) reads and the projector
-- writes through it, always with app.tenant_id set: RLS is FORCEd, so even a query that
-- forgets the tenant sees nothing rather than everything.

CREATE TABLE gov_governance_policies (
    tenant_id       uuid        NOT NULL,
    policy_id       uuid        NOT NULL,
    name            text        NOT NULL,
    description     text        NOT NULL,
    status          text        NOT NULL,
    latest_version  integer     NOT NULL,
    active_version  integer,
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_seq        bigint      NOT NULL,
    CONSTRAINT gov_governance_policies_pkey PRIMARY KEY (tenant_id, policy_id)
);
CREATE INDEX gov_governance_policies_created ON gov_governance_policies (tenant_id, created_at, policy_id);
CREATE INDEX gov_governance_policies_name ON gov_governance_policies (tenant_id, name, policy_id);

CREATE TABLE gov_governance_policy_versions (
    tenant_id   uuid        NOT NULL,
    policy_id   uuid        NOT NULL,
    version     integer     NOT NULL,
    rego        text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    ledger_seq  bigint      NOT NULL,
    CONSTRAINT gov_governance_policy_versions_pkey PRIMARY KEY (tenant_id, policy_id, version)
);

-- The tenant a session acts for, or NULL when unset (which matches no row).
CREATE FUNCTION gov_current_tenant() RETURNS uuid
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

ALTER TABLE gov_governance_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_governance_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_governance_policies
    USING (tenant_id = gov_current_tenant()) WITH CHECK (tenant_id = gov_current_tenant());

ALTER TABLE gov_governance_policy_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_governance_policy_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_governance_policy_versions
    USING (tenant_id = gov_current_tenant()) WITH CHECK (tenant_id = gov_current_tenant());

-- Where each projector stands in the ledger. Not tenant data: no RLS.
CREATE TABLE gov_projection_positions (
    projection  text        NOT NULL,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gov_projection_positions_pkey PRIMARY KEY (projection)
);

REVOKE ALL ON gov_governance_policies, gov_governance_policy_versions, gov_projection_positions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON gov_governance_policies, gov_governance_policy_versions TO gov_app;
GRANT SELECT, INSERT, UPDATE ON gov_projection_positions TO gov_app;
