-- Roles of the audit database (what `governance-engine dev up` does locally). The
-- primary's app role does not exist here.
CREATE ROLE gov_ledger_admin LOGIN PASSWORD 'change-me-admin' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE gov_ledger_writer LOGIN PASSWORD 'change-me-writer' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE gov_ledger_reader LOGIN PASSWORD 'change-me-reader' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE DATABASE aumos_governance_audit OWNER gov_ledger_admin;
REVOKE ALL ON DATABASE aumos_governance_audit FROM PUBLIC;
GRANT CONNECT ON DATABASE aumos_governance_audit TO gov_ledger_admin, gov_ledger_writer, gov_ledger_reader;
