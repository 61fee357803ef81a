//! SQLite persistence of what administrators define. SQL lives in
//! `migrations/` and in the queries below; nothing else touches the database.
//!
//! `password` parameters are sealed here on the way in and opened on the
//! way out ([`secrets`]): the rest of the service sees clear values, the
//! database file never holds one.

pub mod secrets;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::output::{OutputSpec, ParamType, Parameter};
use secrets::SecretKey;

mod auth;
pub use auth::{AuditEntry, Principal, Role, SessionRow, TokenInfo, User};

pub const DATABASE_FILE: &str = "brokerstream.db";

/// `migrations/`, inside the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The schema migrations this binary knows, oldest first.
pub fn known_migrations() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// The migrations a database says were applied, oldest first; none for a
/// database that never was migrated.
pub async fn applied_migrations(
    connection: &mut sqlx::SqliteConnection,
) -> Result<Vec<i64>, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *connection)
    .await?;
    if table.is_none() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *connection)
        .await
}

/// Refuses a database that a newer brokerstream migrated: this binary
/// cannot know what those migrations changed, and sqlx's own error names
/// one version and no way out.
pub fn check_no_unknown_migrations(database: &Path, applied: &[i64]) -> anyhow::Result<()> {
    let known = known_migrations();
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.contains(v))
        .map(i64::to_string)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the database {} has schema migration(s) {} applied, which this brokerstream ({}) does \
         not know: the newest it knows is {}. A newer brokerstream upgraded this database, and \
         this one is not started on it (a downgrade is not supported). Install the newer \
         brokerstream again, or restore a backup taken before the upgrade into a new data \
         directory (`brokerstream restore BACKUP --data-dir DIR`, see the README)",
        database.display(),
        unknown.join(", "),
        env!("CARGO_PKG_VERSION"),
        known
            .last()
            .map_or_else(|| "none".to_owned(), i64::to_string),
    )
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    key: Arc<SecretKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an output named `{0}` already exists")]
    Duplicate(String),
    #[error("no output named `{0}`")]
    NotFound(String),
    /// Something other than an output is missing; the text says what.
    #[error("{0}")]
    Missing(String),
    #[error("`{0}` is the last admin; make another user admin first")]
    LastAdmin(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt stored output `{name}`: {reason}")]
    Corrupt { name: String, reason: String },
}

/// An output with its bookkeeping dates.
#[derive(Clone, Debug)]
pub struct StoredOutput {
    pub spec: OutputSpec,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The data directory holds the secret key, the database and every event:
/// only the service's user may enter it. One made by an older version (or
/// by hand) with wider rights is narrowed, and said so.
fn private_to_the_service(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |e| {
                anyhow::anyhow!(
                    "cannot make {} private (chmod 700): {e}",
                    data_dir.display()
                )
            },
        )?;
        tracing::info!(
            "data directory {} was mode {mode:o}; now 700, the service's user only",
            data_dir.display()
        );
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and brings its
    /// schema up to date.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display())
        })?;
        private_to_the_service(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // What a row held before an update or a delete is zeroed, not
            // left in free space: a password sealed from clear text (or a
            // deleted one) leaves no trace in the file.
            .pragma("secure_delete", "ON")
            // A write waits this long for another connection's to end
            // rather than failing with "database is locked" (sqlx's default
            // too, set here so that it is not lost). Read-then-write
            // transactions begin IMMEDIATE for the same reason (store/auth.rs).
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
        migrate(&pool, &path).await?;
        let key = unlock_secrets(&pool, data_dir).await?;
        Ok(Store {
            pool,
            key: Arc::new(key),
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How many outputs exist (`limits.max_outputs` bounds it).
    pub async fn count_outputs(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outputs")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub async fn list_outputs(&self) -> Result<Vec<StoredOutput>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, kind, path, enabled, filters, created_at, updated_at
             FROM outputs ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut outputs = Vec::with_capacity(rows.len());
        for row in rows {
            outputs.push(self.output_from_row(row).await?);
        }
        Ok(outputs)
    }

    pub async fn get_output(&self, name: &str) -> Result<StoredOutput, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, kind, path, enabled, filters, created_at, updated_at
             FROM outputs WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        self.output_from_row(row).await
    }

    async fn output_from_row(
        &self,
        row: sqlx::sqlite::SqliteRow,
    ) -> Result<StoredOutput, StoreError> {
        let id: i64 = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let corrupt = |reason: String| StoreError::Corrupt {
            name: name.clone(),
            reason,
        };
        let filters: String = row.try_get("filters")?;
        let filters: Vec<String> =
            serde_json::from_str(&filters).map_err(|e| corrupt(format!("filters: {e}")))?;
        let parse_time = |column: &str| -> Result<OffsetDateTime, StoreError> {
            let text: String = row.try_get(column)?;
            OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| corrupt(format!("{column}: {e}")))
        };
        let created_at = parse_time("created_at")?;
        let updated_at = parse_time("updated_at")?;
        let params = sqlx::query(
            "SELECT name, type, value FROM output_parameters WHERE output_id = ? ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut parameters = Vec::with_capacity(params.len());
        for p in params {
            let ty: String = p.try_get("type")?;
            let ty =
                ParamType::parse(&ty).ok_or_else(|| corrupt(format!("parameter type `{ty}`")))?;
            let param_name: String = p.try_get("name")?;
            let mut value: String = p.try_get("value")?;
            if ty == ParamType::Password {
                value = self.key.open(&name, &param_name, &value).map_err(|e| {
                    corrupt(format!(
                        "password parameter `{param_name}` cannot be decrypted: {e}"
                    ))
                })?;
            }
            parameters.push(Parameter {
                name: param_name,
                ty,
                value,
            });
        }
        Ok(StoredOutput {
            spec: OutputSpec {
                name: name.clone(),
                kind: row.try_get("kind")?,
                path: row.try_get("path")?,
                enabled: row.try_get("enabled")?,
                filters,
                parameters,
            },
            created_at,
            updated_at,
        })
    }

    pub async fn create_output(&self, spec: &OutputSpec) -> Result<(), StoreError> {
        let now = now_text();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO outputs (name, kind, path, enabled, filters, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(&spec.kind)
        .bind(&spec.path)
        .bind(spec.enabled)
        .bind(filters_text(spec))
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Duplicate(spec.name.clone()));
        }
        let id = inserted.last_insert_rowid();
        insert_parameters(&mut tx, &self.key, id, spec).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the definition of an existing output (same name).
    pub async fn update_output(&self, spec: &OutputSpec) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM outputs WHERE name = ?")
            .bind(&spec.name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(spec.name.clone()))?;
        sqlx::query(
            "UPDATE outputs SET kind = ?, path = ?, enabled = ?, filters = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(&spec.kind)
        .bind(&spec.path)
        .bind(spec.enabled)
        .bind(filters_text(spec))
        .bind(now_text())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM output_parameters WHERE output_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_parameters(&mut tx, &self.key, id, spec).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives an output a new name. Password values are sealed under the
    /// output's name, so each is sealed again under the new one, in the
    /// same transaction.
    pub async fn rename_output(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let spec = self.get_output(from).await?.spec;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM outputs WHERE name = ?")
            .bind(from)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(from.to_owned()))?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM outputs WHERE name = ?")
            .bind(to)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Duplicate(to.to_owned()));
        }
        sqlx::query("UPDATE outputs SET name = ?, updated_at = ? WHERE id = ?")
            .bind(to)
            .bind(now_text())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for p in spec
            .parameters
            .iter()
            .filter(|p| p.ty == ParamType::Password)
        {
            sqlx::query(
                "UPDATE output_parameters SET value = ?
                 WHERE output_id = ? AND name = ? AND type = 'password'",
            )
            .bind(self.key.seal(to, &p.name, &p.value))
            .bind(id)
            .bind(&p.name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_output(&self, name: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM outputs WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(())
    }
}

/// Brings the schema up to date, after checking that no newer version
/// migrated it, and says which migrations an upgrade applied.
async fn migrate(pool: &SqlitePool, path: &Path) -> anyhow::Result<()> {
    let applied = applied_migrations(&mut *pool.acquire().await?)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read the schema version of {}: {e}", path.display())
        })?;
    check_no_unknown_migrations(path, &applied)?;
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate the database {}: {e}", path.display()))?;
    let new: Vec<String> = known_migrations()
        .into_iter()
        .filter(|v| !applied.contains(v))
        .map(|v| v.to_string())
        .collect();
    if !applied.is_empty() && !new.is_empty() {
        tracing::info!(
            "database {}: applied schema migration(s) {}",
            path.display(),
            new.join(", ")
        );
    }
    Ok(())
}

/// Writes the parameters of `spec`, each password sealed under the names
/// it is written with.
async fn insert_parameters(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: &SecretKey,
    output_id: i64,
    spec: &OutputSpec,
) -> Result<(), StoreError> {
    for (position, p) in spec.parameters.iter().enumerate() {
        let value = match p.ty {
            ParamType::Password => key.seal(&spec.name, &p.name, &p.value),
            _ => p.value.clone(),
        };
        sqlx::query(
            "INSERT INTO output_parameters (output_id, position, name, type, value)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(output_id)
        .bind(position as i64)
        .bind(&p.name)
        .bind(p.ty.as_str())
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Loads the secret key (creating it for a database that has no sealed
/// value yet), checks that it opens every sealed value, and seals the
/// values an earlier version stored in clear, all of them in one
/// transaction. Any failure stops the start: a password is never dropped
/// nor left unreadable without saying so.
async fn unlock_secrets(pool: &SqlitePool, data_dir: &Path) -> anyhow::Result<SecretKey> {
    let rows = sqlx::query(
        "SELECT p.output_id, o.name AS output, p.name, p.value
         FROM output_parameters p JOIN outputs o ON o.id = p.output_id
         WHERE p.type = 'password'",
    )
    .fetch_all(pool)
    .await?;
    let mut passwords = Vec::with_capacity(rows.len());
    for row in rows {
        let output_id: i64 = row.try_get("output_id")?;
        let output: String = row.try_get("output")?;
        let name: String = row.try_get("name")?;
        let value: String = row.try_get("value")?;
        passwords.push((output_id, output, name, value));
    }
    let any_sealed = passwords.iter().any(|(.., v)| secrets::is_sealed(v));
    let key = SecretKey::load(data_dir, !any_sealed)?;
    for (_, output, name, value) in passwords.iter().filter(|(.., v)| secrets::is_sealed(v)) {
        if let Err(e) = key.open(output, name, value) {
            anyhow::bail!(
                "cannot decrypt password parameter `{name}` of output `{output}` with the key in \
                 {}: {e}. Put back the key file this database was encrypted with (from the \
                 backup of the data directory); brokerstream will not start without it",
                key.path().display()
            );
        }
    }
    let clear: Vec<_> = passwords
        .iter()
        .filter(|(.., v)| !secrets::is_sealed(v))
        .collect();
    if !clear.is_empty() {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        for (output_id, output, name, value) in &clear {
            sqlx::query(
                "UPDATE output_parameters SET value = ?
                 WHERE output_id = ? AND name = ? AND type = 'password'",
            )
            .bind(key.seal(output, name, value))
            .bind(output_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // The old pages may still sit in the write-ahead log: fold it into
        // the database (where secure_delete zeroed them) and empty it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await?;
        tracing::info!(
            "encrypted {} password parameter(s) that an earlier version stored in clear",
            clear.len()
        );
    }
    Ok(key)
}

fn filters_text(spec: &OutputSpec) -> String {
    serde_json::Value::from(spec.filters.clone()).to_string()
}

pub fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
