-- Dataplane insights are written by the control planes themselves, about
-- once a second per connected proxy, and no control plane follows them
-- through the change feed (the API reads them from the table). Announcing
-- them only filled every listener's channel, and every NOTIFY serializes
-- its transaction's commit on the database's notification queue: they are
-- no longer announced.
CREATE OR REPLACE FUNCTION kuma_notify_resource_change() RETURNS trigger AS $$
DECLARE
    changed resources;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF changed.type = 'DataplaneInsight' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('kuma_resource_changes', json_build_object(
        'op', TG_OP, 'type', changed.type, 'mesh', changed.mesh,
        'name', changed.name)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
