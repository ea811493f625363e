-- gov_ledger_add_tree_nodes compares each node it is given with the stored one by an index
-- probe per node, whatever the table's size.
--
-- Before, the comparison was a join of the given nodes with gov_audit_tree_nodes. PL/pgSQL
-- caches a generic plan after a few calls; planned while the table was small (a new
-- ledger, and since the notary stores only subtrees of 16 leaves or more, a table about a
-- sixteenth of its former size), that plan was a sequential scan and a hash join, kept
-- while the table grew until the next ANALYZE: every call then read the whole table.
-- Measured with bench-ledger's notary arm (a fresh notary catching up 1,000,000 entries):
-- 35,000-46,000 entries/s, against 54,000 with the older, larger table, and a profile of
-- the writer backends dominated by the sequential scan. A correlated subquery on the
-- primary key has only one plan.
--
-- Since the notary now stores only subtrees of 16 leaves or more, level 0 no longer holds
-- the leaf hashes of new entries (it and levels 1-3 may still hold older rows, which the
-- notary never reads; see src/adapters/ledger/notary.rs).

CREATE OR REPLACE FUNCTION gov_ledger_add_tree_nodes(p_levels smallint[], p_idxs bigint[], p_hashes bytea[])
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
                WHERE (SELECT n.hash FROM gov_audit_tree_nodes n WHERE n.level = u.l AND n.idx = u.i) <> u.h) THEN
        RAISE EXCEPTION 'a stored tree node differs from the one computed from the entries' USING ERRCODE = 'check_violation';
    END IF;
END
$$;
