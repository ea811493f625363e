-- A checkpoint may not claim more entries than the ledger holds. Without this, the writer
-- role could insert a checkpoint row of any tree size (say 9e18), and a notary that trusted
-- the newest row would never sign a real checkpoint again. The check reads the entries as
-- the function's owner: the writer role itself has no SELECT on them.

CREATE FUNCTION gov_ledger_check_checkpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.tree_size > COALESCE((SELECT max(seq) FROM gov_audit_trail_entries), 0) THEN
        RAISE EXCEPTION 'checkpoint tree size % is beyond the ledger head', NEW.tree_size
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION gov_ledger_check_checkpoint() FROM PUBLIC;

CREATE TRIGGER gov_audit_checkpoints_within_head
    BEFORE INSERT ON gov_audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION gov_ledger_check_checkpoint();
