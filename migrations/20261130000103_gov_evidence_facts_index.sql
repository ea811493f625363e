-- What a cold dashboard reads of a tenant's active evidence (the facts judging needs), in
-- workflow order, straight from one index: an index-only scan of the tenant's own entries,
-- already in the order the dashboard streams them. Without it, the tenant's rows are read
-- from heap pages shared with every other tenant and sorted (spilling to disk for a large
-- tenant): with 10 tenants of 50,000 records interleaved in a 157 MB table, 18,728 pages
-- and a sort against 1,104 index pages; the cold dashboard 193 ms -> 72 ms (p50).
CREATE INDEX gov_evidence_facts ON gov_evidence (tenant_id, workflow_id)
    INCLUDE (evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict)
    WHERE status = 'active';
