-- Meshes, and every mesh-scoped resource in one table. The foreign key makes
-- "a resource needs its mesh" and "deleting a mesh deletes what is in it"
-- hold inside the database, even with several control planes writing.
CREATE TABLE meshes (
    name              text        PRIMARY KEY,
    version           bigint      NOT NULL,
    spec              jsonb       NOT NULL,
    creation_time     timestamptz NOT NULL DEFAULT now(),
    modification_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE resources (
    type              text        NOT NULL,
    mesh              text        NOT NULL REFERENCES meshes (name) ON DELETE CASCADE,
    name              text        NOT NULL,
    version           bigint      NOT NULL,
    spec              jsonb       NOT NULL,
    creation_time     timestamptz NOT NULL DEFAULT now(),
    modification_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (type, mesh, name)
);

CREATE INDEX resources_mesh ON resources (mesh);

-- The change feed: every row change is announced on one channel, so every
-- control plane connected to this database hears every write.
CREATE FUNCTION kuma_notify_mesh_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kuma_resource_changes', json_build_object(
        'op', TG_OP, 'type', 'Mesh', 'mesh', '',
        'name', CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION kuma_notify_resource_change() RETURNS trigger AS $$
DECLARE
    changed resources;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('kuma_resource_changes', json_build_object(
        'op', TG_OP, 'type', changed.type, 'mesh', changed.mesh,
        'name', changed.name)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER meshes_notify AFTER INSERT OR UPDATE OR DELETE ON meshes
    FOR EACH ROW EXECUTE FUNCTION kuma_notify_mesh_change();
CREATE TRIGGER resources_notify AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION kuma_notify_resource_change();
