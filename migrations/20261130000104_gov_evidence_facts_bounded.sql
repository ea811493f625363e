-- The covering index of the dashboard's evidence facts (20261130000103) holds the records'
-- id arrays, and a btree entry must fit in about a third of a page (2,704 bytes): a record
-- naming many long ids (a tenant chooses them; 64 KiB of metadata hold thousands) would make
-- its insert fail, and stop the evidence projector on that entry. The index now holds only
-- records naming at most 24 ids in all (each id at most 64 bytes: an entry stays under
-- ~1,900 bytes, however the ids are chosen); a second, small index finds the others, which
-- the dashboard reads first and merges in workflow order.
DROP INDEX gov_evidence_facts;
CREATE INDEX gov_evidence_facts ON gov_evidence (tenant_id, workflow_id)
    INCLUDE (evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict)
    WHERE status = 'active' AND cardinality(requirement_ids) + cardinality(control_ids) <= 24;
CREATE INDEX gov_evidence_many_ids ON gov_evidence (tenant_id, workflow_id)
    WHERE status = 'active' AND cardinality(requirement_ids) + cardinality(control_ids) > 24;
