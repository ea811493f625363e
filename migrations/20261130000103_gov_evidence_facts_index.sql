-- What a cold dashboard reads of a tenant's active evidence (the facts judging needs), in
-- workflow order, straight from one index: an index-only scan of the tenant's own entries,
-- already in the order the dashboard streams them. Without it, the tenant's rows are read
-- from heap pages shared with every other tenant and sorted (spilling to disk for a large
-- tenant): with 10 tenants of 50,000 records interleaved in a 157 MB table, 18,728 pages
-- and a sort against 1,104 index pages; the cold dashboard 193 ms -> 72 ms (p50).
--
-- A btree entry must fit in about a third of a page (2,704 bytes), and the entry holds the
-- record's id arrays, whose number a tenant chooses (64 KiB of metadata hold thousands): a
-- record naming many long ids would make its insert fail ("index row requires 13736
-- bytes") and stop the evidence projector. So the index holds only records naming at most
-- 24 ids in all (each id at most 64 bytes: an entry stays under ~1,900 bytes, however the
-- ids are chosen); a second, small index finds the others, which the dashboard reads
-- first and merges into the stream in workflow order.
CREATE INDEX gov_evidence_facts ON gov_evidence (tenant_id, workflow_id)
    INCLUDE (evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict)
    WHERE status = 'active' AND cardinality(requirement_ids) + cardinality(control_ids) <= 24;
CREATE INDEX gov_evidence_many_ids ON gov_evidence (tenant_id, workflow_id)
    WHERE status = 'active' AND cardinality(requirement_ids) + cardinality(control_ids) > 24;
