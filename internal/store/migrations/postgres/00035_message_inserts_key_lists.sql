-- +goose Up
-- Ingestion speed (issue 5): the inserts of a statement into messages are
-- logged in one backup_changes row per 1,000 keys (a key list: pk is a
-- JSON array of keys, '[["id1"], ["id2"]]'), instead of one row per
-- message: the statement-level trigger of 00026 wrote 1,000 rows (4.5-6 ms)
-- for a batch of 1,000. A one-row statement logs its key alone, as before. Same rules as before: nothing for the operator's
-- rows (tenant '') or while the tenant is being restored. An incremental
-- backup reads a key list as its keys (backup.changedKeys). The trigger
-- keeps the name backup_change (the backup's schema reader's mark).
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_key_lists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A statement of one row (a message accepted alone) logs its key as
    -- before: the list's aggregate would only cost more.
    PERFORM 1 FROM backup_new OFFSET 1 LIMIT 1;
    IF NOT FOUND THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.id)::text
        FROM backup_new k
        WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        RETURN NULL;
    END IF;
    INSERT INTO backup_changes (tenant_id, tbl, pk)
    SELECT k.tenant_id, TG_TABLE_NAME, json_agg(json_build_array(k.id))::text
    FROM (SELECT n.tenant_id, n.id, (row_number() OVER () - 1) / 1000 AS part FROM backup_new n) k
    WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id)
    GROUP BY k.tenant_id, k.part;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER backup_change ON messages;
CREATE TRIGGER backup_change AFTER INSERT ON messages REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_key_lists();

-- SQLite's marker of a statement whose writer logs its keys itself (see
-- the SQLite migration); unused here, where a statement-level trigger
-- writes the lists. Kept so that both dialects have the same tables.
CREATE TABLE backup_self_logged (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    guard     TEXT NOT NULL DEFAULT '' REFERENCES backup_self_logged (tenant_id) DEFERRABLE INITIALLY DEFERRED
);
ALTER TABLE backup_self_logged ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_self_logged FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backup_self_logged
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
DROP TABLE backup_self_logged;
DROP TRIGGER backup_change ON messages;
CREATE TRIGGER backup_change AFTER INSERT ON messages REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
DROP FUNCTION relais_backup_change_key_lists();
