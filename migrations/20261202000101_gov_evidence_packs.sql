-- Evidence packs: the facts judging needs of a workflow's active evidence, a few dozen
-- records to a row, as lines of text (#14, the cold dashboard at 10x data).
--
-- A cold dashboard judges every active record of the tenant. Read as one row per record
-- (an index-only scan of `gov_evidence_facts`, nine columns, two of them text arrays), a
-- tenant of 50,000 records took PostgreSQL ~60% of a core and the service ~95% (a third
-- of it decoding the rows) for ~120 ms. Read as ~5,000 packs of ~1 KB, the same facts
-- take psql 13 ms instead of 72 ms to fetch.
--
-- Each record belongs to one chunk of its workflow (`gov_evidence.pack_chunk`), given when
-- it is submitted (`gov_evidence_next_chunk`): the workflow's last chunk, until that chunk
-- was given 32 records or ids of 8 KiB in all, then the next. The rule reads only what
-- never changes after submission (how many records, the bytes of their ids), in ledger
-- order, so this backfill, the live projector and `projections rebuild` give every
-- record the same chunk. A new record's line is appended to its chunk's; a chunk's lines
-- are recomputed from its records whenever one of them changes, so every evidence event
-- costs one bounded recomputation (at most 32 records, with ids of at most 8 KiB plus the
-- last record's), however many records the workflow has.
--
-- The line of a record: its fields separated by tabs, its ids by spaces (neither occurs in
-- an id: requirement ids are printable ASCII without space, control ids are CSF ids),
-- dates as days since 2000-01-01 (independent of DateStyle), the verdict empty when none.
-- Lines are separated by newlines, in ledger order. The service decodes them into
-- their types (`projections::evidence_packs`); a line it cannot read is an error.
--
-- Deploy: migrate, then restart every instance. A binary from before this migration can
-- no longer project a submitted record (`pack_chunk` is required), so its evidence
-- projector stops on it, without advancing, until a current binary applies it.
CREATE FUNCTION gov_evidence_fact_line(evidence_id uuid, kind text, requirement_ids text[], control_ids text[],
                                       valid_from date, valid_until date, outcome text, review_verdict text)
    RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
    RETURN evidence_id::text || E'\t' || kind || E'\t' || array_to_string(requirement_ids, ' ') || E'\t'
        || array_to_string(control_ids, ' ') || E'\t' || (valid_from - DATE '2000-01-01')::text || E'\t'
        || (valid_until - DATE '2000-01-01')::text || E'\t' || outcome || E'\t' || coalesce(review_verdict, '');

-- What a record weighs in its chunk: the bytes of its ids, fixed at submission.
CREATE FUNCTION gov_evidence_id_bytes(requirement_ids text[], control_ids text[])
    RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN octet_length(array_to_string(requirement_ids, ' ')) + octet_length(array_to_string(control_ids, ' '));

-- The chunk a new record goes to, from the workflow's last chunk (NULL: none yet), the
-- records it was given and their ids' bytes.
CREATE FUNCTION gov_evidence_next_chunk(last_chunk integer, assigned integer, assigned_bytes integer)
    RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN last_chunk IS NULL THEN 0
                WHEN assigned >= 32 OR assigned_bytes >= 8192 THEN last_chunk + 1
                ELSE last_chunk END;

GRANT EXECUTE ON FUNCTION gov_evidence_fact_line(uuid, text, text[], text[], date, date, text, text) TO gov_app;
GRANT EXECUTE ON FUNCTION gov_evidence_id_bytes(text[], text[]) TO gov_app;
GRANT EXECUTE ON FUNCTION gov_evidence_next_chunk(integer, integer, integer) TO gov_app;

CREATE TABLE gov_evidence_packs (
    tenant_id       uuid    NOT NULL,
    workflow_id     uuid    NOT NULL,
    chunk           integer NOT NULL,
    -- Records ever given this chunk (active or not) and the bytes of their ids: what
    -- closes it.
    assigned        integer NOT NULL,
    assigned_bytes  integer NOT NULL,
    -- The active records' lines ('' when none is active).
    facts           text    NOT NULL,
    CONSTRAINT gov_evidence_packs_pkey PRIMARY KEY (tenant_id, workflow_id, chunk)
);

-- The dashboard no longer reads the facts from the evidence's own indexes; the workflow
-- index is replaced by the chunk index below. Dropped before the backfill rewrites rows.
DROP INDEX gov_evidence_workflow;
DROP INDEX gov_evidence_facts;
DROP INDEX gov_evidence_many_ids;

-- The migrating role owns the tables but does not bypass row-level security, which the
-- evidence forces: lifted for these statements, in this migration's transaction, and
-- forced again below.
ALTER TABLE gov_evidence NO FORCE ROW LEVEL SECURITY;
ALTER TABLE gov_evidence ADD COLUMN pack_chunk integer;
-- Each workflow's records in ledger order, given their chunks by the projector's rule.
CREATE TEMPORARY TABLE gov_chunks (tenant_id uuid, evidence_id uuid, chunk integer) ON COMMIT DROP;
DO $$
DECLARE
    r record;
    w uuid;
    t uuid;
    c integer;
    n integer;
    b integer;
BEGIN
    FOR r IN SELECT tenant_id, workflow_id, evidence_id, gov_evidence_id_bytes(requirement_ids, control_ids) AS bytes
               FROM gov_evidence ORDER BY tenant_id, workflow_id, ledger_seq LOOP
        IF t IS DISTINCT FROM r.tenant_id OR w IS DISTINCT FROM r.workflow_id THEN
            t := r.tenant_id; w := r.workflow_id; c := NULL; n := 0; b := 0;
        END IF;
        IF gov_evidence_next_chunk(c, n, b) IS DISTINCT FROM c THEN
            c := gov_evidence_next_chunk(c, n, b); n := 0; b := 0;
        END IF;
        n := n + 1; b := b + r.bytes;
        INSERT INTO gov_chunks VALUES (r.tenant_id, r.evidence_id, c);
    END LOOP;
END $$;
UPDATE gov_evidence e SET pack_chunk = g.chunk FROM gov_chunks g WHERE g.tenant_id = e.tenant_id AND g.evidence_id = e.evidence_id;
ALTER TABLE gov_evidence ALTER COLUMN pack_chunk SET NOT NULL;
INSERT INTO gov_evidence_packs (tenant_id, workflow_id, chunk, assigned, assigned_bytes, facts)
SELECT tenant_id, workflow_id, pack_chunk, count(*), sum(gov_evidence_id_bytes(requirement_ids, control_ids)),
       coalesce(string_agg(gov_evidence_fact_line(evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome,
                                                  review_verdict), E'\n' ORDER BY ledger_seq) FILTER (WHERE status = 'active'), '')
  FROM gov_evidence
 GROUP BY 1, 2, 3;
ALTER TABLE gov_evidence FORCE ROW LEVEL SECURITY;

-- A chunk's records, found by the recomputation. Unique (the evidence id is), so that
-- `projections rebuild`, which builds only non-unique indexes after its replay, keeps it
-- while it replays. It leads with what `gov_evidence_workflow` indexed.
CREATE UNIQUE INDEX gov_evidence_chunk ON gov_evidence (tenant_id, workflow_id, pack_chunk, evidence_id);

ALTER TABLE gov_evidence_packs ENABLE ROW LEVEL SECURITY;
ALTER TABLE gov_evidence_packs FORCE ROW LEVEL SECURITY;
CREATE POLICY gov_tenant_isolation ON gov_evidence_packs
    USING (tenant_id = (SELECT gov_current_tenant())) WITH CHECK (tenant_id = (SELECT gov_current_tenant()));
REVOKE ALL ON gov_evidence_packs FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON gov_evidence_packs TO gov_app;
