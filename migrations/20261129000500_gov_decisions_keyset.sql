-- Keyset paging of decision records (`GET /decisions?after=`): in ledger order per tenant,
-- and per policy, so a page never scans the rows before it (an OFFSET would).
CREATE INDEX gov_policy_decisions_seq ON gov_policy_decisions (tenant_id, ledger_seq DESC);
CREATE INDEX gov_policy_decisions_policy_seq ON gov_policy_decisions (tenant_id, policy_id, ledger_seq DESC);
