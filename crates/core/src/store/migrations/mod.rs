//! The PostgreSQL schema as embedded, versioned migrations.
//!
//! `kuma-cp migrate up` applies the ones a database lacks, recording each in
//! `schema_migrations`; `kumactl install database-schema --target=postgres`
//! prints the same statements for a DBA to run by hand. Both are built from
//! [`MIGRATIONS`], so they cannot drift apart.

/// One schema version: its number, a short name and its SQL.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: a released migration never
/// changes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "resources",
        sql: include_str!("0001_resources.sql"),
    },
    Migration {
        version: 2,
        name: "global_resources",
        sql: include_str!("0002_global_resources.sql"),
    },
    Migration {
        version: 3,
        name: "quiet_insights",
        sql: include_str!("0003_quiet_insights.sql"),
    },
];

/// The table that records applied migrations.
pub const BOOKKEEPING_SQL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\n    version    bigint      PRIMARY KEY,\n    name       text        NOT NULL,\n    applied_at timestamptz NOT NULL DEFAULT now()\n);\n";

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The statement that records `m` as applied.
pub fn record_sql(m: &Migration) -> String {
    format!(
        "INSERT INTO schema_migrations (version, name) VALUES ({}, '{}');\n",
        m.version, m.name
    )
}

/// The whole schema as one script, in one transaction, bookkeeping
/// included, so a database set up by hand is one `kuma-cp` accepts.
pub fn full_schema_sql() -> String {
    let mut out = String::from("BEGIN;\n\n");
    out.push_str(BOOKKEEPING_SQL);
    for m in MIGRATIONS {
        out.push_str(&format!(
            "\n-- migration {}: {}\n{}\n",
            m.version, m.name, m.sql
        ));
        out.push_str(&record_sql(m));
    }
    out.push_str("\nCOMMIT;\n");
    out
}
