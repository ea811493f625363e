-- The chain invariants held by declarative constraints instead of a per-row trigger.
--
-- Before: every inserted row ran gov_ledger_check_append(), which took the append lock and
-- read the head (PL/pgSQL, one index scan and one lock per row). Now PostgreSQL's own
-- constraint checks hold the same invariants, with no lock and no PL/pgSQL:
--   * no fork: seq is the primary key (one entry per position);
--   * gapless, and the prev-hash link: every entry but the first references its
--     predecessor by (seq - 1, prev_hash) = (seq, hash), a composite foreign key; a gap has
--     no predecessor and a wrong prev_hash matches none;
--   * the genesis: seq 1 has no predecessor (prev_seq is NULL, which a foreign key
--     accepts) and must carry the zero prev_hash (a CHECK).
-- Foreign keys are checked at the end of each statement, so one INSERT may carry a batch
-- whose rows reference each other. Writers still take the append lock in
-- gov_ledger_begin_append() on the careful path; an insert that skips it can only fail.
-- Entries are never updated or deleted (the append-only triggers), so nothing can break a
-- reference once it is made.

ALTER TABLE gov_audit_trail_entries
    ADD COLUMN prev_seq bigint GENERATED ALWAYS AS (NULLIF(seq - 1, 0)) STORED;

ALTER TABLE gov_audit_trail_entries
    ADD CONSTRAINT gov_audit_trail_entries_seq_hash_key UNIQUE (seq, hash);

ALTER TABLE gov_audit_trail_entries
    ADD CONSTRAINT gov_audit_trail_entries_genesis
    CHECK (seq <> 1 OR prev_hash = decode(repeat('00', 32), 'hex'));

-- The name the appender and operators already know for a chain violation.
ALTER TABLE gov_audit_trail_entries
    ADD CONSTRAINT gov_audit_trail_entries_chain
    FOREIGN KEY (prev_seq, prev_hash) REFERENCES gov_audit_trail_entries (seq, hash);

DROP TRIGGER gov_audit_trail_entries_append ON gov_audit_trail_entries;
DROP FUNCTION gov_ledger_check_append();
