-- Signed checkpoints of the ledger's Merkle tree (C2SP tlog-checkpoint signed notes).
-- Append-only like the entries: the same triggers reject UPDATE, DELETE and TRUNCATE.
-- A checkpoint per tree size; concurrent checkpointers of one tree size produce the same
-- note (Ed25519 signatures are deterministic), so the second insert is a no-op.

CREATE TABLE gov_audit_checkpoints (
    tree_size   bigint      NOT NULL,
    root_hash   bytea       NOT NULL,
    origin      text        NOT NULL,
    key_id      text        NOT NULL,
    note        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gov_audit_checkpoints_pkey PRIMARY KEY (tree_size),
    CONSTRAINT gov_audit_checkpoints_size_positive CHECK (tree_size > 0),
    CONSTRAINT gov_audit_checkpoints_root_len CHECK (octet_length(root_hash) = 32)
);

CREATE TRIGGER gov_audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON gov_audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION gov_ledger_reject_change();
CREATE TRIGGER gov_audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON gov_audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION gov_ledger_reject_change();

-- Adds a checkpoint unless one of that tree size exists. ON CONFLICT needs SELECT on the
-- table, which the writer must not have; this function does the check for it.
CREATE FUNCTION gov_ledger_add_checkpoint(p_tree_size bigint, p_root bytea, p_origin text, p_key_id text, p_note text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO gov_audit_checkpoints (tree_size, root_hash, origin, key_id, note)
    VALUES (p_tree_size, p_root, p_origin, p_key_id, p_note)
    ON CONFLICT (tree_size) DO NOTHING
$$;

REVOKE ALL ON gov_audit_checkpoints FROM PUBLIC;
REVOKE ALL ON FUNCTION gov_ledger_add_checkpoint(bigint, bytea, text, text, text) FROM PUBLIC;
GRANT INSERT ON gov_audit_checkpoints TO gov_ledger_writer;
GRANT EXECUTE ON FUNCTION gov_ledger_add_checkpoint(bigint, bytea, text, text, text) TO gov_ledger_writer;
GRANT SELECT ON gov_audit_checkpoints TO gov_ledger_reader;
