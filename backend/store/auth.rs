//! Users, sessions, API tokens and the audit log. Secrets never reach this
//! module in clear: it stores argon2id hashes of passwords and SHA-256
//! digests of session cookies and tokens.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{now_text, Store, StoreError};

/// What a caller may do; each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets.
    Viewer,
    /// Also pauses, resumes, restarts, flushes, replays and skips outputs,
    /// and posts events.
    Operator,
    /// Everything: outputs, scripts, users, tokens, the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// The user behind a session or a token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct SessionRow {
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    let name: String = row.try_get("name")?;
    Ok(User {
        id: row.try_get("id")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
            name: name.clone(),
            reason: format!("role `{role}`"),
        })?,
        name,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn principal_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Principal, StoreError> {
    let role: String = row.try_get("role")?;
    let name: String = row.try_get("name")?;
    Ok(Principal {
        user_id: row.try_get("user_id")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
            name: name.clone(),
            reason: format!("role `{role}`"),
        })?,
        name,
    })
}

/// How stale a token's `last_used_at` may be.
const LAST_USE_PRECISION: time::Duration = time::Duration::minutes(1);

fn time_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// Inside a write transaction: refuses to take away the only admin.
async fn last_admin_stays(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
) -> Result<(), StoreError> {
    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
        .fetch_one(&mut **tx)
        .await?;
    if admins <= 1 {
        return Err(StoreError::LastAdmin(name.to_owned()));
    }
    Ok(())
}

impl Store {
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Fails with [`StoreError::Duplicate`] when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        let now = now_text();
        let inserted = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Duplicate(name.to_owned()));
        }
        Ok(())
    }

    /// Changes a user's role and/or password. A new password ends the
    /// user's sessions: whoever held them must prove the new one. Refuses
    /// ([`StoreError::LastAdmin`]) to demote the last admin.
    ///
    /// `BEGIN IMMEDIATE` takes the write lock before reading: a deferred
    /// transaction that reads then writes fails at once with "database is
    /// locked" when another connection wrote in between (the busy timeout
    /// does not cover that upgrade), and two admins demoting each other
    /// would both see two admins. Immediate transactions wait for each
    /// other (the pool's 5 s busy timeout), one after the other.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT id, role FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("no user named `{name}`")))?;
        let id: i64 = row.try_get("id")?;
        let current: String = row.try_get("role")?;
        if let Some(role) = role {
            if current == Role::Admin.as_str() && role != Role::Admin {
                last_admin_stays(&mut tx, name).await?;
            }
            sqlx::query("UPDATE users SET role = ?, updated_at = ? WHERE id = ?")
                .bind(role.as_str())
                .bind(now_text())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hash) = password_hash {
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
                .bind(hash)
                .bind(now_text())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user, unless it is the last admin.
    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        match role {
            None => return Err(StoreError::Missing(format!("no user named `{name}`"))),
            Some(role) if role == Role::Admin.as_str() => {
                last_admin_stays(&mut tx, name).await?;
            }
            Some(_) => {}
        }
        sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn count_admins(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        // Expired sessions are swept here rather than by a timer: logins
        // are rare, and a lookup already refuses an expired row.
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(time_text(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(time_text(now))
        .bind(time_text(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn find_session(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT s.user_id, s.csrf, s.expires_at, u.name, u.role
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: String = row.try_get("expires_at")?;
        let expires_at =
            OffsetDateTime::parse(&expires, &Rfc3339).map_err(|e| StoreError::Corrupt {
                name: "session".into(),
                reason: format!("expires_at: {e}"),
            })?;
        Ok(Some(SessionRow {
            principal: principal_from_row(&row)?,
            csrf: row.try_get("csrf")?,
            expires_at,
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<i64, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(prefix)
        .bind(now_text())
        .bind(expires_at.map(time_text))
        .execute(&self.pool)
        .await?;
        Ok(inserted.last_insert_rowid())
    }

    /// The token's owner, if the token exists and has not expired; notes
    /// its use.
    pub async fn use_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let row = sqlx::query(
            "SELECT t.id, t.user_id, t.last_used_at, u.name, u.role FROM api_tokens t
             JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = ? AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(token_hash)
        .bind(time_text(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // A producer sends its token with every batch of events: the last
        // use is kept to the minute, not written on every request.
        let last_used: Option<String> = row.try_get("last_used_at")?;
        let stale = last_used
            .and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok())
            .is_none_or(|at| now - at >= LAST_USE_PRECISION);
        if stale {
            let id: i64 = row.try_get("id")?;
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(time_text(now))
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(principal_from_row(&row)?))
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.prefix, t.created_at, t.expires_at, t.last_used_at,
                    u.name AS user, u.role
             FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(TokenInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    user: row.try_get("user")?,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                    prefix: row.try_get("prefix")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// The revoked token's name and owner.
    pub async fn delete_token(&self, id: i64) -> Result<(String, String), StoreError> {
        let row = sqlx::query(
            "DELETE FROM api_tokens WHERE id = ?
             RETURNING name, (SELECT name FROM users WHERE users.id = api_tokens.user_id) AS user",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::Missing(format!("no API token with id {id}")))?;
        Ok((row.try_get("name")?, row.try_get("user")?))
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(now_text())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest entries first.
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
