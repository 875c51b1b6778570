//! The PostgreSQL store: durable, and shared by every `kuma-cp` pointed at
//! the same database.
//!
//! Requests use a bounded connection pool whose timeouts turn an unreachable
//! database into [`StoreError::Unavailable`] (a 503 from the API) within
//! seconds instead of hanging. A separate connection `LISTEN`s on the
//! channel the schema's triggers `NOTIFY`; it reconnects by itself, and
//! after a gap it sends [`ChangeEvent::Resync`] since notifications may have
//! been missed meanwhile.

mod keys;
mod listener;
mod settings;
mod tls;

use super::migrations::{self, MIGRATIONS};
use super::{ChangeEvent, ChangeFeed, ListPage, ListQuery, ResourceStore, StoreError};
use crate::resources::{Resource, ResourceKey, ResourceType, ResourceVersion, Spec};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use keys::{Kept, Keys, PageKey};
pub use settings::{PostgresConfig, PostgresTlsConfig, PostgresTlsMode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::error::SqlState;

/// The channel the schema's triggers notify on.
pub(crate) const CHANNEL: &str = "kuma_resource_changes";

pub struct PostgresStore {
    pool: Pool,
    changes: ChangeFeed,
    /// Lists' keys, kept until the change feed says they moved.
    keys: Arc<Keys>,
    /// Held while a list's keys are read (see [`Keys`]).
    reading_keys: tokio::sync::Mutex<()>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PostgresSetupError {
    #[error("postgres store: {0}")]
    Tls(#[from] tls::PostgresTlsError),
    #[error("postgres store: cannot build the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("postgres store: cannot reach {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "postgres store: database schema is at version {found}, this kuma-cp needs version {needed}; run `kuma-cp migrate up` first"
    )]
    SchemaOutdated { found: i64, needed: i64 },
    #[error("postgres store: {step} failed: {source}")]
    Migration {
        /// What was being done: reading the schema version, or a migration by name.
        step: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

pub(crate) fn pg_config(cfg: &PostgresConfig) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .password(&cfg.password)
        .dbname(&cfg.db_name)
        .application_name("kuma-cp")
        .connect_timeout(Duration::from_secs(cfg.connection_timeout.max(1)));
    c.ssl_mode(tls::ssl_mode(cfg.tls.mode));
    c
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(key: &ResourceKey, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{key}: {e}"))
}

impl PostgresStore {
    /// Connects, checks that the schema is current, and starts listening for
    /// changes.
    pub async fn connect(cfg: &PostgresConfig) -> Result<Self, PostgresSetupError> {
        let connector = tls::connector(&cfg.tls)?;
        let manager = Manager::from_config(
            pg_config(cfg),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Duration::from_secs(cfg.connection_timeout.max(1));
        let pool = Pool::builder(manager)
            .max_size(cfg.max_open_connections.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()?;
        let client = pool.get().await.map_err(|e| PostgresSetupError::Connect {
            host: cfg.host.clone(),
            port: cfg.port,
            source: e.into(),
        })?;
        let found =
            schema_version(&client)
                .await
                .map_err(|source| PostgresSetupError::Migration {
                    step: "reading the schema version".into(),
                    source,
                })?;
        if found < migrations::latest_version() {
            return Err(PostgresSetupError::SchemaOutdated {
                found,
                needed: migrations::latest_version(),
            });
        }
        drop(client);
        let changes = ChangeFeed::default();
        let (listening_tx, listening) = tokio::sync::oneshot::channel();
        let keys = Arc::new(Keys::default());
        let listener = tokio::spawn(listener::run(
            pg_config(cfg),
            connector,
            (changes.clone(), keys.clone()),
            listening_tx,
        ));
        // The feed is live before the store is handed out: a subscriber
        // hears every write made after `connect` returns.
        if tokio::time::timeout(timeout, listening).await.is_err() {
            listener.abort();
            return Err(PostgresSetupError::Connect {
                host: cfg.host.clone(),
                port: cfg.port,
                source: "the change-feed connection could not LISTEN in time".into(),
            });
        }
        Ok(PostgresStore {
            pool,
            changes,
            keys,
            reading_keys: tokio::sync::Mutex::default(),
            listener,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// The keys of `query`'s list, found unread at `generation`, read by
    /// `sql` with `params` and kept. One read at a time: requests that find
    /// the keys unread together wait for the first one's read rather than
    /// each reading them all.
    async fn read_keys(
        &self,
        client: &deadpool_postgres::Object,
        query: &ListQuery,
        generation: u64,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Arc<[PageKey]>, StoreError> {
        let _reading = self.reading_keys.lock().await;
        if let Kept::Known(keys) = self.keys.get(query) {
            return Ok(keys);
        }
        let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(unavailable)?;
        let keys: Arc<[PageKey]> = rows
            .iter()
            .map(|row| (row.get("mesh"), row.get("name")))
            .collect();
        self.keys.remember(query, generation, keys.clone());
        Ok(keys)
    }
}

async fn schema_version(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map(|row| row.get(0))
}

/// Applies every migration the database lacks, each in its own transaction,
/// under an advisory lock so that two `kuma-cp migrate up` at once are safe.
/// Returns the versions applied.
pub async fn migrate_up(cfg: &PostgresConfig) -> Result<Vec<i64>, PostgresSetupError> {
    let connector = tls::connector(&cfg.tls)?;
    let connect_err = |e: tokio_postgres::Error| PostgresSetupError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        source: e.into(),
    };
    let (mut client, connection) = pg_config(cfg)
        .connect(connector)
        .await
        .map_err(connect_err)?;
    let conn = tokio::spawn(connection);
    let migration_err = |source: tokio_postgres::Error| PostgresSetupError::Migration {
        step: "migrating".into(),
        source,
    };
    client
        .batch_execute("SELECT pg_advisory_lock(4246262)")
        .await
        .map_err(migration_err)?;
    client
        .batch_execute(migrations::BOOKKEEPING_SQL)
        .await
        .map_err(migration_err)?;
    let current = schema_version(&client).await.map_err(migration_err)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = client.transaction().await.map_err(migration_err)?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| PostgresSetupError::Migration {
                step: format!("migration {} ({})", m.version, m.name),
                source,
            })?;
        tx.batch_execute(&migrations::record_sql(m))
            .await
            .map_err(migration_err)?;
        tx.commit().await.map_err(migration_err)?;
        applied.push(m.version);
    }
    drop(client);
    let _ = conn.await;
    Ok(applied)
}

/// The table of a kind: meshes, the resources inside them, or those
/// outside every mesh (same columns as `resources`, without the mesh's
/// foreign key).
fn table_of(kind: ResourceType) -> &'static str {
    if kind == ResourceType::Mesh {
        "meshes"
    } else if kind.is_mesh_scoped() {
        "resources"
    } else {
        "global_resources"
    }
}

fn table_key(key: &ResourceKey) -> (&'static str, &str) {
    let table = table_of(key.kind);
    (
        table,
        if table == "meshes" {
            ""
        } else {
            key.kind.name()
        },
    )
}

/// The resource `key` from a row of its `version` and `spec`.
fn decode(key: ResourceKey, row: &tokio_postgres::Row) -> Result<Resource, StoreError> {
    let version: i64 = row.try_get("version").map_err(|e| corrupt(&key, e))?;
    let spec: SpecText = row.try_get("spec").map_err(|e| corrupt(&key, e))?;
    let spec = Spec::from_json_text(key.kind, spec.0).map_err(|c| corrupt(&key, c.message))?;
    Ok(Resource {
        key,
        version: ResourceVersion::new(version.to_string()),
        spec,
    })
}

/// A `spec` column as its JSON text, borrowed from the row: parsed
/// straight into the resource's model, not into a `serde_json::Value`.
struct SpecText<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for SpecText<'a> {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form is a format version, 1, then the text.
        match raw.split_first() {
            Some((1, text)) if *ty == tokio_postgres::types::Type::JSONB => Ok(SpecText(text)),
            _ if *ty == tokio_postgres::types::Type::JSON => Ok(SpecText(raw)),
            _ => Err(format!("a {ty} column is not a JSON spec").into()),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        matches!(
            *ty,
            tokio_postgres::types::Type::JSONB | tokio_postgres::types::Type::JSON
        )
    }
}

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn create(&self, resource: Resource) -> Result<Resource, StoreError> {
        let client = self.client().await?;
        let spec = resource.spec.to_fields();
        let key = &resource.key;
        let (table, kind) = table_key(key);
        let result = if table == "meshes" {
            client
                .execute(
                    "INSERT INTO meshes (name, version, spec) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING",
                    &[&key.name, &spec],
                )
                .await
        } else {
            client
                .execute(
                    &format!("INSERT INTO {table} (type, mesh, name, version, spec) VALUES ($1, $2, $3, 1, $4) ON CONFLICT DO NOTHING"),
                    &[&kind, &key.mesh, &key.name, &spec],
                )
                .await
        };
        match result {
            Ok(1) => {
                // This process's next list has it, without waiting
                // for the feed to bring the news back.
                self.keys.heard(&ChangeEvent::Created(key.clone()));
                Ok(Resource {
                    version: ResourceVersion::new("1"),
                    ..resource
                })
            }
            Ok(_) => Err(StoreError::AlreadyExists(resource.key)),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::MeshNotFound(resource.key.mesh))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn update(&self, resource: Resource) -> Result<Resource, StoreError> {
        let client = self.client().await?;
        let spec = resource.spec.to_fields();
        let key = &resource.key;
        // This store's versions are counters; anything else is stale.
        let expected: i64 = resource.version.as_str().parse().unwrap_or(-1);
        let (table, kind) = table_key(key);
        let updated = if table == "meshes" {
            client
                .query_opt(
                    "UPDATE meshes SET spec = $1, version = version + 1, modification_time = now() WHERE name = $2 AND version = $3 RETURNING version",
                    &[&spec, &key.name, &expected],
                )
                .await
        } else {
            client
                .query_opt(
                    &format!("UPDATE {table} SET spec = $1, version = version + 1, modification_time = now() WHERE type = $2 AND mesh = $3 AND name = $4 AND version = $5 RETURNING version"),
                    &[&spec, &kind, &key.mesh, &key.name, &expected],
                )
                .await
        }
        .map_err(unavailable)?;
        match updated {
            Some(row) => Ok(Resource {
                version: ResourceVersion::new(row.get::<_, i64>(0).to_string()),
                ..resource
            }),
            None => {
                let actual = self.get(key).await?.version;
                Err(StoreError::Conflict {
                    key: resource.key,
                    expected: resource.version,
                    actual,
                })
            }
        }
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let client = self.client().await?;
        let (table, kind) = table_key(key);
        let deleted = if table == "meshes" {
            client
                .execute("DELETE FROM meshes WHERE name = $1", &[&key.name])
                .await
        } else if key.kind == ResourceType::Dataplane {
            // The dataplane and its insight go in one statement.
            client
                .query(
                    "DELETE FROM resources WHERE (type = $1 OR type = $4) AND mesh = $2 AND name = $3 RETURNING type",
                    &[&kind, &key.mesh, &key.name, &ResourceType::DataplaneInsight.name()],
                )
                .await
                .map(|rows| rows.iter().filter(|r| r.get::<_, &str>(0) == kind).count() as u64)
        } else {
            client
                .execute(
                    &format!("DELETE FROM {table} WHERE type = $1 AND mesh = $2 AND name = $3"),
                    &[&kind, &key.mesh, &key.name],
                )
                .await
        }
        .map_err(unavailable)?;
        if deleted == 0 {
            return Err(StoreError::NotFound(key.clone()));
        }
        self.keys.heard(&ChangeEvent::Deleted(key.clone()));
        Ok(())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        let client = self.client().await?;
        let (table, kind) = table_key(key);
        // Prepared once per connection: a read is then one round trip.
        let row = if table == "meshes" {
            let statement = client
                .prepare_cached("SELECT version, spec FROM meshes WHERE name = $1")
                .await
                .map_err(unavailable)?;
            client.query_opt(&statement, &[&key.name]).await
        } else {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT version, spec FROM {table} WHERE type = $1 AND mesh = $2 AND name = $3"
                ))
                .await
                .map_err(unavailable)?;
            client
                .query_opt(&statement, &[&kind, &key.mesh, &key.name])
                .await
        }
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::NotFound(key.clone()))?;
        decode(key.clone(), &row)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let client = self.client().await?;
        let limit = query.limit.map_or(i64::MAX, |l| l as i64);
        // Tag filter: some inbound must contain every tag. jsonb
        // containment expresses exactly that.
        let tags = (!query.tags.is_empty())
            .then(|| serde_json::json!({"networking": {"inbound": [{"tags": query.tags}]}}));
        let kind = query.kind.name();
        let table = table_of(query.kind);
        // Only the conditions this query has: a statement's cached generic
        // plan then is the one for `type = $1 AND mesh = $2`, an index
        // scan of the primary key (type, mesh, name) in page order, not one
        // for "any mesh, any tags" that reads the whole table.
        let mut filter: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        let mut conditions = Vec::new();
        if table != "meshes" {
            filter.push(&kind);
            conditions.push(format!("type = ${}", filter.len()));
        }
        if let Some(mesh) = &query.mesh {
            filter.push(mesh);
            conditions.push(format!("mesh = ${}", filter.len()));
        }
        if let Some(tags) = &tags {
            filter.push(tags);
            conditions.push(format!("spec @> ${}", filter.len()));
        }
        let (key_columns, mesh_column) = if table == "meshes" {
            ("name", "'' AS mesh")
        } else {
            ("mesh, name", "mesh")
        };
        let where_sql = |conditions: &[String]| {
            if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            }
        };
        let select = format!("SELECT {mesh_column}, name, version, spec FROM {table}");
        // Statements are prepared once per connection. A page walks the
        // primary key in order and stops at LIMIT.
        let keys = match self.keys.get(query) {
            Kept::Known(keys) => Some(keys),
            Kept::Unread { generation } => {
                let sql = format!(
                    "SELECT {mesh_column}, name FROM {table} {} ORDER BY {key_columns}",
                    where_sql(&conditions)
                );
                Some(
                    self.read_keys(&client, query, generation, &sql, &filter)
                        .await?,
                )
            }
            Kept::Never => None,
        };
        let (rows, total) = match keys {
            Some(keys) => {
                // The page starts at the key at its offset: a seek in the
                // primary key, not a walk past `offset` rows.
                let Some((mesh, name)) = keys.get(query.offset) else {
                    return Ok(ListPage {
                        items: Vec::new(),
                        total: keys.len(),
                    });
                };
                let mut params = filter.clone();
                // Within one mesh the seek is on the name: with `mesh = $2`
                // beside it, a row comparison `(mesh, name) >= ...` would
                // start the scan at the mesh's first key and check every
                // key up to the offset.
                if table == "meshes" || query.mesh.is_some() {
                    params.push(name);
                    conditions.push(format!("name >= ${}", params.len()));
                } else {
                    params.push(mesh);
                    params.push(name);
                    conditions.push(format!(
                        "(mesh, name) >= (${}, ${})",
                        params.len() - 1,
                        params.len()
                    ));
                }
                params.push(&limit);
                let sql = format!(
                    "{select} {} ORDER BY {key_columns} LIMIT ${}",
                    where_sql(&conditions),
                    params.len()
                );
                let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
                let rows = client.query(&statement, &params).await;
                (rows.map_err(unavailable)?, keys.len())
            }
            None => {
                // Never kept (a tag filter, insights): the page walks past
                // `offset` rows, and the count is read on the same
                // connection, pipelined with it. The count reads no spec
                // (`COUNT(*) OVER ()` would read every matching one).
                let filter_sql = where_sql(&conditions);
                let page_sql = format!(
                    "{select} {filter_sql} ORDER BY {key_columns} LIMIT ${} OFFSET ${}",
                    filter.len() + 1,
                    filter.len() + 2,
                );
                let count_sql = format!("SELECT COUNT(*) FROM {table} {filter_sql}");
                let offset = query.offset as i64;
                let mut page_params = filter.clone();
                page_params.push(&limit);
                page_params.push(&offset);
                let (page_statement, count_statement) = futures::try_join!(
                    client.prepare_cached(&page_sql),
                    client.prepare_cached(&count_sql)
                )
                .map_err(unavailable)?;
                let (rows, total) = futures::try_join!(
                    client.query(&page_statement, &page_params),
                    client.query_one(&count_statement, &filter),
                )
                .map_err(unavailable)?;
                (rows, total.get::<_, i64>(0) as usize)
            }
        };
        let mut page = ListPage {
            items: Vec::with_capacity(rows.len()),
            total,
        };
        for row in rows {
            let key = ResourceKey::new(query.kind, row.get("mesh"), row.get("name"));
            page.items.push(decode(key, &row)?);
        }
        Ok(page)
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .batch_execute("SELECT 1")
            .await
            .map_err(unavailable)
    }
}
