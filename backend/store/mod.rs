//! SQLite persistence of what administrators define. SQL lives in
//! `migrations/` and in the queries below; nothing else touches the database.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::output::{OutputSpec, ParamType, Parameter};

mod auth;
pub use auth::{AuditEntry, Principal, SessionRow, TokenInfo, User};

pub const DATABASE_FILE: &str = "brokerstream.db";

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and brings its
    /// schema up to date.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display())
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
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
            parameters.push(Parameter {
                name: p.try_get("name")?,
                ty: ParamType::parse(&ty)
                    .ok_or_else(|| corrupt(format!("parameter type `{ty}`")))?,
                value: p.try_get("value")?,
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
        let mut tx = self.pool.begin().await?;
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
        insert_parameters(&mut tx, id, &spec.parameters).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the definition of an existing output (same name).
    pub async fn update_output(&self, spec: &OutputSpec) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
        insert_parameters(&mut tx, id, &spec.parameters).await?;
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

async fn insert_parameters(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    output_id: i64,
    parameters: &[Parameter],
) -> Result<(), StoreError> {
    for (position, p) in parameters.iter().enumerate() {
        sqlx::query(
            "INSERT INTO output_parameters (output_id, position, name, type, value)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(output_id)
        .bind(position as i64)
        .bind(&p.name)
        .bind(p.ty.as_str())
        .bind(&p.value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn filters_text(spec: &OutputSpec) -> String {
    serde_json::Value::from(spec.filters.clone()).to_string()
}

pub(crate) fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
