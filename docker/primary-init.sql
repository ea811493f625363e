-- Roles of the primary database (what `governance-engine dev up` does locally).
CREATE ROLE gov_owner LOGIN PASSWORD 'change-me-owner' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE gov_app LOGIN PASSWORD 'change-me-app' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE DATABASE aumos_governance OWNER gov_owner;
REVOKE ALL ON DATABASE aumos_governance FROM PUBLIC;
GRANT CONNECT ON DATABASE aumos_governance TO gov_owner, gov_app;
