-- Evidence packs: the facts judging needs of a workflow's active evidence, a few dozen
-- records to a row, as lines of text (#14, the cold dashboard at 10x data).
--
-- A cold dashboard judges every active record of the tenant. Read as one row per record
-- (an index-only scan of `gov_evidence_facts`, nine columns, two of them text arrays), a
-- tenant of 50,000 records took PostgreSQL ~60% of a core and the service ~95% (a third
-- of it decoding the rows) for ~120 ms. Read as ~5,000 packs of ~1 KB, the same facts
-- take psql 13 ms instead of 72 ms to fetch.
--
-- Each record belongs to one chunk of its workflow (`gov_evidence.pack_chunk`), chosen
-- when it is projected: the workflow's last chunk, until that chunk was given 32 records
-- or its facts reach 8 KiB, then the next. A chunk's facts are recomputed from its
-- records (at most 32, one of them maybe large) whenever one of them changes, so every
-- evidence event costs one bounded recomputation, however many records the workflow has.
--
-- The line of a record: its fields separated by tabs, its ids by spaces (neither occurs in
-- an id: requirement ids are printable ASCII without space, control ids are CSF ids),
-- dates as days since 2000-01-01 (independent of DateStyle), the verdict empty when none.
-- Lines are separated by newlines, in evidence-id order. The service decodes them into
-- their types (`projections::evidence_packs`); a line it cannot read is an error.
CREATE FUNCTION gov_evidence_fact_line(evidence_id uuid, kind text, requirement_ids text[], control_ids text[],
                                       valid_from date, valid_until date, outcome text, review_verdict text)
    RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
    RETURN evidence_id::text || E'\t' || kind || E'\t' || array_to_string(requirement_ids, ' ') || E'\t'
        || array_to_string(control_ids, ' ') || E'\t' || (valid_from - DATE '2000-01-01')::text || E'\t'
        || (valid_until - DATE '2000-01-01')::text || E'\t' || outcome || E'\t' || coalesce(review_verdict, '');

CREATE TABLE gov_evidence_packs (
    tenant_id    uuid    NOT NULL,
    workflow_id  uuid    NOT NULL,
    chunk        integer NOT NULL,
    -- Records ever given this chunk (active or not): what closes it.
    assigned     integer NOT NULL,
    -- The active records' lines ('' when none is active).
    facts        text    NOT NULL,
    CONSTRAINT gov_evidence_packs_pkey PRIMARY KEY (tenant_id, workflow_id, chunk)
);

-- The migrating role owns the tables but does not bypass row-level security, which the
-- evidence forces: lifted for these statements, in this migration's transaction, and
-- forced again below.
ALTER TABLE gov_evidence NO FORCE ROW LEVEL SECURITY;
ALTER TABLE gov_evidence ADD COLUMN pack_chunk integer;
UPDATE gov_evidence e SET pack_chunk = n.k / 32
  FROM (SELECT tenant_id, evidence_id, (row_number() OVER (PARTITION BY tenant_id, workflow_id ORDER BY ledger_seq) - 1)::integer AS k
          FROM gov_evidence) n
 WHERE n.tenant_id = e.tenant_id AND n.evidence_id = e.evidence_id;
ALTER TABLE gov_evidence ALTER COLUMN pack_chunk SET NOT NULL;
INSERT INTO gov_evidence_packs (tenant_id, workflow_id, chunk, assigned, facts)
SELECT tenant_id, workflow_id, pack_chunk, count(*),
       coalesce(string_agg(gov_evidence_fact_line(evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome,
                                                  review_verdict), E'\n' ORDER BY evidence_id) FILTER (WHERE status = 'active'), '')
  FROM gov_evidence
 GROUP BY 1, 2, 3;
ALTER TABLE gov_evidence FORCE ROW LEVEL SECURITY;

-- A chunk's records, found by the recomputation. Unique (the evidence id is), so that
-- `projections rebuild`, which builds only non-unique indexes after its replay, keeps it
-- while it replays. It leads with what `gov_evidence_workflow` indexed, which it replaces;
-- the dashboard no longer reads the facts from the evidence's own indexes.
CREATE UNIQUE INDEX gov_evidence_chunk ON gov_evidence (tenant_id, workflow_id, pack_chunk, evidence_id);
DROP INDEX gov_evidence_workflow;
DROP INDEX gov_evidence_facts;
DROP INDEX gov_evidence_many_ids;

ALTER TABLE gov_evidence_packs ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_evidence_packs FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_evidence_packs
    USING (tenant_id = (SELECT gov_current_tenant())) WITH CHECK (tenant_id = (SELECT gov_current_tenant()));
REVOKE ALL ON gov_evidence_packs FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON gov_evidence_packs TO gov_app;
