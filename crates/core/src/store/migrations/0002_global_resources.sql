-- Resources outside every mesh (access roles and their bindings, the
-- control plane's global secrets): the same columns as `resources`, with
-- `mesh` always '' and no mesh to belong to.
CREATE TABLE global_resources (
    type              text        NOT NULL,
    mesh              text        NOT NULL DEFAULT '' CHECK (mesh = ''),
    name              text        NOT NULL,
    version           bigint      NOT NULL,
    spec              jsonb       NOT NULL,
    creation_time     timestamptz NOT NULL DEFAULT now(),
    modification_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (type, mesh, name)
);

CREATE FUNCTION kuma_notify_global_change() RETURNS trigger AS $$
DECLARE
    changed global_resources;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('kuma_resource_changes', json_build_object(
        'op', TG_OP, 'type', changed.type, 'mesh', '',
        'name', changed.name)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER global_resources_notify AFTER INSERT OR UPDATE OR DELETE ON global_resources
    FOR EACH ROW EXECUTE FUNCTION kuma_notify_global_change();
