//! The two migration trees, `migrations/sqlite` and `migrations/postgres`, must define one
//! schema: the host writes the same SQL to both, so a column or constraint that only one
//! tree has is a bug that shows up on one backend only, often much later.
//!
//! Both trees are applied to fresh databases (a temporary SQLite file, and a throwaway
//! database on the PostgreSQL test server) and read back from each database's catalog:
//! tables; columns with their nullability and a type class (SQLite's `BLOB` and
//! PostgreSQL's `BYTEA` are both "bytes"); primary keys; unique constraints by their
//! columns; every named index with its columns and uniqueness; and every foreign key by
//! its columns and the columns it references.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The migrator's own bookkeeping table, not part of the schema.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// A column as both databases can describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    nullable: bool,
    class: String,
}

/// An index created by name (`CREATE INDEX`), not one backing a constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    table: String,
    unique: bool,
    columns: Vec<String>,
}

/// What the comparison looks at, read from one database's catalog.
#[derive(Debug, Default)]
struct Schema {
    /// `(table, column)` → column.
    columns: BTreeMap<(String, String), Column>,
    /// Table → primary-key columns in key order.
    primary_keys: BTreeMap<String, Vec<String>>,
    /// `(table, columns)` of every unique constraint or unique index except primary keys;
    /// the names of constraint indexes differ between the databases, their columns do not.
    unique: BTreeSet<(String, Vec<String>)>,
    /// Name → named index.
    indexes: BTreeMap<String, Index>,
    /// `(table, column, referenced table, referenced column)` of every single-column foreign
    /// key (the schema has no other kind): which references the database enforces is part
    /// of what the host relies on, tenant deletion first of all.
    foreign_keys: BTreeSet<(String, String, String, String)>,
}

impl Schema {
    fn tables(&self) -> BTreeSet<&str> {
        self.columns.keys().map(|(t, _)| t.as_str()).collect()
    }
}

/// The type class of a declared column type: enough to catch `TEXT` against `BIGINT`
/// without tripping over each database's spelling of the same thing.
fn type_class(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    let class = if t.contains("int") || t.contains("serial") {
        "integer"
    } else if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("blob") || t == "bytea" {
        "bytes"
    } else if t.contains("real") || t.contains("floa") || t.contains("doub") || t == "numeric" {
        "real"
    } else if t.starts_with("bool") {
        "boolean"
    } else {
        // An unknown type is compared by its own name, so it still has to match.
        return format!("other:{t}");
    };
    class.to_owned()
}

/// A database file removed (with its journal files) when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn sqlite_schema() -> Schema {
    let file = TempFile(std::env::temp_dir().join(format!(
        "posbridge-schema-{}.db",
        posbridge_harness::random_suffix(12)
    )));
    let url = format!("sqlite://{}?mode=rwc", file.0.display());
    let mut conn = SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    SQLITE
        .run(&mut conn)
        .await
        .expect("apply migrations/sqlite");

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> ?",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut conn)
    .await
    .expect("list tables");

    let mut schema = Schema::default();
    for table in tables {
        let columns: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .expect("table_info");
        let mut key: Vec<(i64, String)> = Vec::new();
        for (name, declared, not_null, pk) in columns {
            if pk > 0 {
                key.push((pk, name.clone()));
            }
            // SQLite lets a non-integer primary key hold NULL unless it says NOT NULL;
            // PostgreSQL makes every key column NOT NULL. The host never stores a NULL key,
            // so a key column counts as not null on both.
            let column = Column {
                nullable: !not_null && pk == 0,
                class: type_class(&declared),
            };
            schema.columns.insert((table.clone(), name), column);
        }
        if !key.is_empty() {
            key.sort();
            let key = key.into_iter().map(|(_, c)| c).collect();
            schema.primary_keys.insert(table.clone(), key);
        }

        let indexes: Vec<(String, bool, String)> =
            sqlx::query_as("SELECT name, \"unique\", origin FROM pragma_index_list(?)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .expect("index_list");
        for (name, unique, origin) in indexes {
            if origin == "pk" {
                continue;
            }
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&mut conn)
                    .await
                    .expect("index_info");
            if unique {
                schema.unique.insert((table.clone(), columns.clone()));
            }
            // `c`: made by CREATE INDEX; `u`: backs a UNIQUE constraint, named by SQLite.
            if origin == "c" {
                let index = Index {
                    table: table.clone(),
                    unique,
                    columns,
                };
                schema.indexes.insert(name, index);
            }
        }

        let references: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?)",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .expect("foreign_key_list");
        let ids: BTreeSet<i64> = references.iter().map(|r| r.0).collect();
        assert_eq!(
            ids.len(),
            references.len(),
            "a foreign key of {table} spans several columns: compare those too"
        );
        for (_, column, parent, parent_column) in references {
            schema
                .foreign_keys
                .insert((table.clone(), column, parent, parent_column));
        }
    }
    conn.close().await.ok();
    schema
}

/// Applies the PostgreSQL tree to a database of its own on the test server, reads it back
/// and drops the database.
async fn postgres_schema() -> Schema {
    // Finding the server may start the run's throwaway cluster: blocking work.
    let admin_url = tokio::task::spawn_blocking(posbridge_harness::postgres_admin_url)
        .await
        .expect("finding the tests' PostgreSQL");
    let admin_options =
        PgConnectOptions::from_str(&admin_url).unwrap_or_else(|e| panic!("{admin_url}: {e}"));
    let mut admin = PgConnection::connect_with(&admin_options)
        .await
        .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
    let name = format!("pbschema_{}", posbridge_harness::random_suffix(12));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut conn = PgConnection::connect_with(&admin_options.clone().database(&name))
        .await
        .unwrap_or_else(|e| panic!("connect to {name}: {e}"));
    let schema = read_postgres_schema(&mut conn).await;
    conn.close().await.ok();
    sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    admin.close().await.ok();
    schema
}

async fn read_postgres_schema(conn: &mut PgConnection) -> Schema {
    POSTGRES
        .run(&mut *conn)
        .await
        .expect("apply migrations/postgres");

    let mut schema = Schema::default();
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.is_nullable::text, c.data_type::text
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.table_name <> $1",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await
    .expect("columns");
    for (table, name, nullable, declared) in columns {
        let column = Column {
            nullable: nullable == "YES",
            class: type_class(&declared),
        };
        schema.columns.insert((table, name), column);
    }

    // One row per index: its table, name, flags and columns in index order.
    let indexes: Vec<(String, String, bool, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, ix.indisunique, ix.indisprimary,
                EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ix.indexrelid),
                ARRAY(SELECT a.attname::text
                      FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                      ORDER BY k.ord)
         FROM pg_index ix
         JOIN pg_class i ON i.oid = ix.indexrelid
         JOIN pg_class t ON t.oid = ix.indrelid
         WHERE t.relnamespace = current_schema()::regnamespace AND t.relname <> $1",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await
    .expect("indexes");
    for (table, name, unique, primary, backs_constraint, columns) in indexes {
        if primary {
            schema.primary_keys.insert(table, columns);
            continue;
        }
        if unique {
            schema.unique.insert((table.clone(), columns.clone()));
        }
        if !backs_constraint {
            let index = Index {
                table,
                unique,
                columns,
            };
            schema.indexes.insert(name, index);
        }
    }

    // One row per column of a foreign key; `conkey` and `confkey` pair up by position.
    let references: Vec<(String, String, String, String, i32)> = sqlx::query_as(
        "SELECT t.relname::text, a.attname::text, p.relname::text, pa.attname::text,
                cardinality(k.conkey)
         FROM pg_constraint k
         JOIN pg_class t ON t.oid = k.conrelid
         JOIN pg_class p ON p.oid = k.confrelid
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
         JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
         WHERE k.contype = 'f' AND t.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("foreign keys");
    for (table, column, parent, parent_column, width) in references {
        assert_eq!(
            width, 1,
            "a foreign key of {table} spans several columns: compare those too"
        );
        schema
            .foreign_keys
            .insert((table, column, parent, parent_column));
    }
    schema
}

/// One line per key whose value differs or that only one side has.
fn differences<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    sqlite: &BTreeMap<K, V>,
    postgres: &BTreeMap<K, V>,
) -> Vec<String> {
    let keys: BTreeSet<&K> = sqlite.keys().chain(postgres.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (sqlite.get(k), postgres.get(k)) {
            (Some(a), Some(b)) if a == b => None,
            (a, b) => Some(format!("{what} {k:?}: sqlite {a:?}, postgres {b:?}")),
        })
        .collect()
}

fn set_differences<T: Ord + Debug>(
    what: &str,
    sqlite: &BTreeSet<T>,
    postgres: &BTreeSet<T>,
) -> Vec<String> {
    let only = |side: &str, a: &BTreeSet<T>, b: &BTreeSet<T>| {
        a.difference(b)
            .map(|x| format!("{what} {x:?} only in {side}"))
            .collect::<Vec<_>>()
    };
    let mut out = only("sqlite", sqlite, postgres);
    out.extend(only("postgres", postgres, sqlite));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_postgres_migrations_define_the_same_schema() {
    let sqlite = sqlite_schema().await;
    // The catalog queries must see something, or an empty comparison would pass.
    assert!(sqlite.tables().contains("tenants"), "{sqlite:?}");
    assert!(!sqlite.indexes.is_empty() && !sqlite.unique.is_empty());
    let reference = |table: &str, column: &str, parent: &str| {
        (
            table.to_owned(),
            column.to_owned(),
            parent.to_owned(),
            "id".to_owned(),
        )
    };
    // A customer's tenant reference stays enforced; the ledgers' and the event log's
    // own tenant references are derived (migration 0022), so SQLite must not keep them.
    assert!(sqlite
        .foreign_keys
        .contains(&reference("customers", "tenant_id", "tenants")));
    assert!(sqlite.foreign_keys.contains(&reference(
        "loyalty_transactions",
        "customer_id",
        "customers"
    )));
    for table in ["events", "loyalty_transactions", "gift_card_transactions"] {
        assert!(
            !sqlite
                .foreign_keys
                .contains(&reference(table, "tenant_id", "tenants")),
            "{table}"
        );
    }
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let postgres = postgres_schema().await;

    let mut problems = set_differences(
        "table",
        &sqlite.tables().into_iter().collect(),
        &postgres.tables().into_iter().collect(),
    );
    problems.extend(differences("column", &sqlite.columns, &postgres.columns));
    problems.extend(differences(
        "primary key of",
        &sqlite.primary_keys,
        &postgres.primary_keys,
    ));
    problems.extend(set_differences("unique", &sqlite.unique, &postgres.unique));
    problems.extend(differences("index", &sqlite.indexes, &postgres.indexes));
    problems.extend(set_differences(
        "foreign key",
        &sqlite.foreign_keys,
        &postgres.foreign_keys,
    ));
    assert!(
        problems.is_empty(),
        "migrations/sqlite and migrations/postgres disagree:\n  {}",
        problems.join("\n  ")
    );
}
