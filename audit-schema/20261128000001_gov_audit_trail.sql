-- The Audit Wall: the ledger of every state change, on the audit instance.
--
-- Applied by the ledger admin (the table owner). The roles gov_ledger_writer and
-- gov_ledger_reader exist already: they are cluster-level and carry secrets, so the
-- provisioning step creates them, not a migration.
--
-- Invariants the database itself enforces (docs/ledger-format.md explains the hashes):
--   * seq is gapless: every insert must be seq = previous + 1 and link prev_hash to the
--     previous entry's hash (trigger gov_ledger_check_append), under one append lock;
--   * (aggregate_type, aggregate_id, aggregate_seq) is unique: optimistic concurrency;
--   * UPDATE, DELETE and TRUNCATE are rejected for every role, the owner included.
-- The hashes themselves are computed and checked outside the database, by the appender
-- and by `governance-engine ledger verify`; a superuser who rewrites rows is caught by
-- the signed checkpoints that auditors hold.

CREATE TABLE gov_audit_trail_entries (
    seq             bigint      NOT NULL,
    tenant_id       uuid        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    aggregate_seq   bigint      NOT NULL,
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    -- json, not jsonb: json keeps the exact text that was hashed.
    payload         json        NOT NULL,
    actor           text        NOT NULL,
    request_id      text,
    trace_id        text,
    causation_id    text,
    correlation_id  text,
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    CONSTRAINT gov_audit_trail_entries_pkey PRIMARY KEY (seq),
    CONSTRAINT gov_audit_trail_entries_aggregate_key UNIQUE (aggregate_type, aggregate_id, aggregate_seq),
    CONSTRAINT gov_audit_trail_entries_seq_positive CHECK (seq > 0),
    CONSTRAINT gov_audit_trail_entries_aggregate_seq_positive CHECK (aggregate_seq > 0),
    CONSTRAINT gov_audit_trail_entries_hash_len CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32)
);

CREATE INDEX gov_audit_trail_entries_tenant_seq ON gov_audit_trail_entries (tenant_id, seq);

-- The append lock. Every writer takes it before reading the head, and the insert trigger
-- takes it again (re-entrant within a transaction), so an insert that skipped it still
-- serialises behind the appenders.
CREATE FUNCTION gov_ledger_lock_key() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 7357000000000001::bigint $$;

-- Takes the append lock for the rest of the transaction and returns the chain head and,
-- for the (type, id, seq) triples a batch is about to insert, the indexes (1-based) of
-- those that already exist. The writer role cannot SELECT the table; this function is
-- its only window on it, and shows nothing but the head and the conflicts.
CREATE FUNCTION gov_ledger_begin_append(p_types text[], p_ids text[], p_seqs bigint[])
RETURNS TABLE (head_seq bigint, head_hash bytea, conflicts integer[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(gov_ledger_lock_key());
    SELECT e.seq, e.hash INTO head_seq, head_hash
      FROM gov_audit_trail_entries e ORDER BY e.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;
    SELECT coalesce(array_agg(c.i ORDER BY c.i), '{}') INTO conflicts
      FROM unnest(p_types, p_ids, p_seqs) WITH ORDINALITY AS c(t, id, s, i)
     WHERE EXISTS (SELECT 1 FROM gov_audit_trail_entries e
                    WHERE e.aggregate_type = c.t AND e.aggregate_id = c.id AND e.aggregate_seq = c.s);
    RETURN NEXT;
END
$$;

CREATE FUNCTION gov_ledger_check_append() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    prev record;
BEGIN
    PERFORM pg_advisory_xact_lock(gov_ledger_lock_key());
    SELECT e.seq, e.hash INTO prev FROM gov_audit_trail_entries e ORDER BY e.seq DESC LIMIT 1;
    IF prev.seq IS NULL THEN
        IF NEW.seq <> 1 OR NEW.prev_hash <> decode(repeat('00', 32), 'hex') THEN
            RAISE EXCEPTION 'ledger must start at seq 1 with a zero prev_hash'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'gov_audit_trail_entries_chain';
        END IF;
    ELSIF NEW.seq <> prev.seq + 1 OR NEW.prev_hash <> prev.hash THEN
        RAISE EXCEPTION 'ledger entry % does not extend the head % (gapless chain)', NEW.seq, prev.seq
            USING ERRCODE = 'check_violation', CONSTRAINT = 'gov_audit_trail_entries_chain';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER gov_audit_trail_entries_append
    BEFORE INSERT ON gov_audit_trail_entries
    FOR EACH ROW EXECUTE FUNCTION gov_ledger_check_append();

-- Append-only, for every role.
CREATE FUNCTION gov_ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is forbidden: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER gov_audit_trail_entries_no_update_delete
    BEFORE UPDATE OR DELETE ON gov_audit_trail_entries
    FOR EACH ROW EXECUTE FUNCTION gov_ledger_reject_change();
CREATE TRIGGER gov_audit_trail_entries_no_truncate
    BEFORE TRUNCATE ON gov_audit_trail_entries
    FOR EACH STATEMENT EXECUTE FUNCTION gov_ledger_reject_change();

-- Grants: the writer appends, the reader reads, nobody else touches.
REVOKE ALL ON gov_audit_trail_entries FROM PUBLIC;
REVOKE ALL ON FUNCTION gov_ledger_begin_append(text[], text[], bigint[]) FROM PUBLIC;
GRANT INSERT ON gov_audit_trail_entries TO gov_ledger_writer;
GRANT EXECUTE ON FUNCTION gov_ledger_begin_append(text[], text[], bigint[]) TO gov_ledger_writer;
GRANT SELECT ON gov_audit_trail_entries TO gov_ledger_reader;
