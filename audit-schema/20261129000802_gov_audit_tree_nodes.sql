-- The Merkle tree's complete subtree hashes, stored so that the notary keeps only the
-- tree's right edge in memory (O(log n) hashes) and computes proofs from stored nodes.
--
-- A node (level, idx) is MTH of the leaves [idx * 2^level, (idx + 1) * 2^level): level 0
-- holds the leaf hashes. Nodes are derived data: anyone can recompute them from the
-- entries (docs/ledger-format.md), a proof built from a wrong node fails verification
-- against the signed checkpoints, and the notary checks the stored nodes against its
-- newest signed checkpoint when it starts. Append-only like the entries.

CREATE TABLE gov_audit_tree_nodes (
    level   smallint NOT NULL,
    idx     bigint   NOT NULL,
    hash    bytea    NOT NULL,
    CONSTRAINT gov_audit_tree_nodes_pkey PRIMARY KEY (level, idx),
    CONSTRAINT gov_audit_tree_nodes_position CHECK (level >= 0 AND level < 63 AND idx >= 0),
    CONSTRAINT gov_audit_tree_nodes_hash_len CHECK (octet_length(hash) = 32)
);

CREATE TRIGGER gov_audit_tree_nodes_no_update_delete
    BEFORE UPDATE OR DELETE ON gov_audit_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION gov_ledger_reject_change();
CREATE TRIGGER gov_audit_tree_nodes_no_truncate
    BEFORE TRUNCATE ON gov_audit_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION gov_ledger_reject_change();

-- Adds nodes; a node stored already must carry the same hash (several notaries compute the
-- same nodes), and no node may cover a leaf beyond the ledger's head.
CREATE FUNCTION gov_ledger_add_tree_nodes(p_levels smallint[], p_idxs bigint[], p_hashes bytea[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_levels, p_idxs) AS u(l, i)
                WHERE (u.i + 1) * (1::bigint << u.l) > COALESCE((SELECT max(seq) FROM gov_audit_trail_entries), 0)) THEN
        RAISE EXCEPTION 'a tree node covers leaves beyond the ledger head' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO gov_audit_tree_nodes (level, idx, hash)
    SELECT l, i, h FROM unnest(p_levels, p_idxs, p_hashes) AS u(l, i, h)
    ON CONFLICT (level, idx) DO NOTHING;
    IF EXISTS (SELECT 1 FROM unnest(p_levels, p_idxs, p_hashes) AS u(l, i, h)
                 JOIN gov_audit_tree_nodes n ON n.level = u.l AND n.idx = u.i
                WHERE n.hash <> u.h) THEN
        RAISE EXCEPTION 'a stored tree node differs from the one computed from the entries' USING ERRCODE = 'check_violation';
    END IF;
END
$$;

REVOKE ALL ON gov_audit_tree_nodes FROM PUBLIC;
REVOKE ALL ON FUNCTION gov_ledger_add_tree_nodes(smallint[], bigint[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gov_ledger_add_tree_nodes(smallint[], bigint[], bytea[]) TO gov_ledger_writer;
GRANT SELECT ON gov_audit_tree_nodes TO gov_ledger_reader;
