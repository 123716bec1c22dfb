-- +goose Up
-- Backups (review of 00034): every insert into messages is logged as a key
-- list, a one-row statement too ('[["id"]]'), and an update or delete as a
-- plain key ('["id"]'). An incremental reads a message's content only for
-- the messages inserted since the point before (the keys of key lists): a
-- content row changes only with its message's insert, or by its own update
-- and delete, which its own triggers log. Before, every logged key of
-- messages brought its content (about 5 kB) along, so a campaign's
-- receipts arriving after the point that carried its messages carried
-- every content again. A migration makes the next point a full one, so
-- keys logged before it are never read with this rule.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION relais_backup_change_key_lists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A statement of one row (a message accepted alone) logs a list of its
    -- key, without the aggregate (which would only cost more).
    PERFORM 1 FROM backup_new OFFSET 1 LIMIT 1;
    IF NOT FOUND THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(jsonb_build_array(k.id))::text
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION relais_backup_change_key_lists() RETURNS trigger LANGUAGE plpgsql AS $$
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
