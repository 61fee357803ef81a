//! Users, API tokens and the audit log: the REST resources and the pages
//! that manage them. Both go through the same functions, so the rules (the
//! last admin stays, passwords are long enough, every change is audited)
//! hold whichever way a change comes in.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::auth::{audit, session_cookie, Caller};
use super::html::{render, Confirm};
use super::outputs::parse_body;
use super::pages::Me;
use super::{ApiError, Context};
use crate::auth::{check_new_password, check_user_name, LoginError, Role};
use crate::output::FieldErrors;
use crate::store::{AuditEntry, TokenInfo, User};

fn parse_role(text: &str, errors: &mut FieldErrors) -> Option<Role> {
    let role = Role::parse(text);
    if role.is_none() {
        errors.add(
            "role",
            format!("`{text}` is not one of viewer, operator, admin"),
        );
    }
    role
}

async fn create_user(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    password: &str,
    role: &str,
) -> Result<(), ApiError> {
    let mut errors = FieldErrors::default();
    if let Err(e) = check_user_name(name) {
        errors.add("name", e);
    }
    if let Err(e) = check_new_password(password) {
        errors.add("password", e);
    }
    let role = parse_role(role, &mut errors);
    errors.into_result()?;
    let role = role.unwrap_or(Role::Viewer);
    let hash = ctx.auth.hash(password).await.map_err(ApiError::Internal)?;
    match ctx.store.create_user(name, &hash, role).await {
        Err(crate::store::StoreError::Duplicate(_)) => {
            return Err(ApiError::Conflict(format!(
                "a user named `{name}` already exists"
            )))
        }
        other => other?,
    }
    audit(
        ctx,
        &caller.name,
        "user.create",
        name,
        json!({"role": role}),
    )
    .await;
    Ok(())
}

async fn update_user(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    role: Option<&str>,
    password: Option<&str>,
) -> Result<(), ApiError> {
    let mut errors = FieldErrors::default();
    let role = role.and_then(|r| parse_role(r, &mut errors));
    if let Some(Err(e)) = password.map(check_new_password) {
        errors.add("password", e);
    }
    errors.into_result()?;
    // The last admin stays: the store checks it in the same transaction
    // as the change, so two admins demoting each other cannot both win.
    let hash = match password {
        Some(p) => Some(ctx.auth.hash(p).await.map_err(ApiError::Internal)?),
        None => None,
    };
    ctx.store.update_user(name, role, hash.as_deref()).await?;
    ctx.auth.users_changed();
    let mut detail = json!({});
    if let Some(role) = role {
        detail["role"] = json!(role);
    }
    if password.is_some() {
        detail["password"] = json!("changed");
    }
    audit(ctx, &caller.name, "user.update", name, detail).await;
    Ok(())
}

async fn delete_user(ctx: &Context, caller: &Caller, name: &str) -> Result<(), ApiError> {
    ctx.store.delete_user(name).await?;
    ctx.auth.users_changed();
    audit(ctx, &caller.name, "user.delete", name, json!({})).await;
    Ok(())
}

/// A new token's clear value, shown once.
struct NewToken {
    id: i64,
    name: String,
    user: String,
    token: String,
    prefix: String,
    expires_at: Option<String>,
}

async fn create_token(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    user: Option<&str>,
    expires_in_days: Option<u32>,
) -> Result<NewToken, ApiError> {
    let mut errors = FieldErrors::default();
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        errors.add("name", "1 to 100 characters saying what the token is for");
    }
    if expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
        errors.add(
            "expires_in_days",
            "between 1 and 3650, or absent for no expiry",
        );
    }
    let owner_name = user.unwrap_or(&caller.name);
    let owner = ctx.store.get_user(owner_name).await?;
    if owner.is_none() {
        errors.add("user", format!("no user named `{owner_name}`"));
    }
    errors.into_result()?;
    let owner = owner.ok_or_else(|| ApiError::Internal("owner vanished".into()))?;
    let expires_at =
        expires_in_days.map(|d| OffsetDateTime::now_utc() + time::Duration::days(i64::from(d)));
    let (token, prefix, id) = ctx.auth.create_token(owner.id, name, expires_at).await?;
    let expires_at = expires_at.map(super::pages::full_time);
    audit(
        ctx,
        &caller.name,
        "token.create",
        name,
        json!({"id": id, "user": owner.name, "prefix": prefix, "expires_at": expires_at}),
    )
    .await;
    Ok(NewToken {
        id,
        name: name.to_owned(),
        user: owner.name,
        token,
        prefix,
        expires_at,
    })
}

async fn revoke_token(ctx: &Context, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let (name, user) = ctx.store.delete_token(id).await?;
    audit(
        ctx,
        &caller.name,
        "token.revoke",
        &name,
        json!({"id": id, "user": user}),
    )
    .await;
    Ok(())
}

async fn change_own_password(
    ctx: &Context,
    caller: &Caller,
    client: std::net::IpAddr,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    match ctx.auth.check_password(client, &caller.name, current).await {
        Ok(_) => {}
        Err(LoginError::Refused) => {
            return Err(ApiError::invalid(
                "current_password",
                "is not your password",
            ))
        }
        Err(e @ (LoginError::Limited { .. } | LoginError::Busy)) => {
            return Err(ApiError::Unavailable(e.to_string()))
        }
        Err(LoginError::Store(e)) => return Err(e.into()),
    }
    check_new_password(new).map_err(|e| ApiError::invalid("new_password", e))?;
    let hash = ctx.auth.hash(new).await.map_err(ApiError::Internal)?;
    ctx.store
        .update_user(&caller.name, None, Some(&hash))
        .await?;
    ctx.auth.users_changed();
    audit(
        ctx,
        &caller.name,
        "user.update",
        &caller.name,
        json!({"password": "changed"}),
    )
    .await;
    Ok(())
}

fn text_field<'a>(
    body: &'a serde_json::Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Option<&'a str> {
    match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.add(key, "must be a string");
            None
        }
    }
}

// ---- REST ----

pub async fn me(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.name, "role": caller.role}))
}

pub async fn change_own_password_api(
    State(ctx): State<Context>,
    caller: Caller,
    client: axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_body(&body)?;
    let mut errors = FieldErrors::default();
    let current = text_field(&body, "current_password", &mut errors).unwrap_or("");
    let new = text_field(&body, "new_password", &mut errors).unwrap_or("");
    errors.into_result()?;
    change_own_password(&ctx, &caller, client.0.ip(), current, new).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(State(ctx): State<Context>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(ctx.store.list_users().await?))
}

pub async fn get(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    ctx.store
        .get_user(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no user named `{name}`")))
}

pub async fn create(
    State(ctx): State<Context>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let mut errors = FieldErrors::default();
    let name = text_field(&body, "name", &mut errors).unwrap_or("");
    let password = text_field(&body, "password", &mut errors).unwrap_or("");
    let role = text_field(&body, "role", &mut errors).unwrap_or("viewer");
    for key in body.keys() {
        if !["name", "password", "role"].contains(&key.as_str()) {
            errors.add(key, "unknown field");
        }
    }
    errors.into_result()?;
    create_user(&ctx, &caller, name, password, role).await?;
    let user = ctx.store.get_user(name).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

pub async fn update(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Option<User>>, ApiError> {
    let body = parse_body(&body)?;
    let mut errors = FieldErrors::default();
    let role = text_field(&body, "role", &mut errors);
    let password = text_field(&body, "password", &mut errors);
    for key in body.keys() {
        if !["role", "password"].contains(&key.as_str()) {
            errors.add(key, "unknown field");
        }
    }
    errors.into_result()?;
    update_user(&ctx, &caller, &name, role, password).await?;
    Ok(Json(ctx.store.get_user(&name).await?))
}

pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_user(&ctx, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_tokens(State(ctx): State<Context>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(ctx.store.list_tokens().await?))
}

pub async fn create_token_api(
    State(ctx): State<Context>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let mut errors = FieldErrors::default();
    let name = text_field(&body, "name", &mut errors).unwrap_or("");
    let user = text_field(&body, "user", &mut errors);
    let days = match body.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|d| u32::try_from(d).ok()) {
            Some(d) => Some(d),
            None => {
                errors.add("expires_in_days", "must be a whole number of days");
                None
            }
        },
    };
    errors.into_result()?;
    let new = create_token(&ctx, &caller, name, user, days).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": new.id,
            "name": new.name,
            "user": new.user,
            "prefix": new.prefix,
            "expires_at": new.expires_at,
            "token": new.token,
        })),
    )
        .into_response())
}

pub async fn revoke(
    State(ctx): State<Context>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no API token with id `{id}`")))?;
    revoke_token(&ctx, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit_log(
    State(ctx): State<Context>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(ctx.store.audit_entries(limit).await?))
}

// ---- Pages ----

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    me: Me,
    error: String,
    done: bool,
}

pub async fn account_page(caller: Caller) -> Result<Response, ApiError> {
    Ok(render(&AccountPage {
        me: Me::from(&caller),
        error: String::new(),
        done: false,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn account_submit(
    State(ctx): State<Context>,
    caller: Caller,
    client: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<AccountForm>,
) -> Result<Response, ApiError> {
    let outcome = if form.new_password != form.confirm_password {
        Err(ApiError::invalid("confirm_password", "does not match"))
    } else {
        change_own_password(
            &ctx,
            &caller,
            client.0.ip(),
            &form.current_password,
            &form.new_password,
        )
        .await
    };
    match outcome {
        Ok(()) => {
            // The change ended every session of this user; this browser
            // gets a new one rather than being sent to the login page.
            let principal = crate::store::Principal {
                user_id: caller.user_id,
                name: caller.name.clone(),
                role: caller.role,
            };
            let session = ctx.auth.start_session(&principal).await?;
            let mut me = Me::from(&caller);
            me.csrf = session.csrf.clone();
            let mut response = render(&AccountPage {
                me,
                error: String::new(),
                done: true,
            })?
            .into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&ctx, session));
            Ok(response)
        }
        Err(e) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&AccountPage {
                me: Me::from(&caller),
                error: error_text(&e),
                done: false,
            })?,
        )
            .into_response()),
    }
}

/// An error as one sentence for a page.
fn error_text(e: &ApiError) -> String {
    match e {
        ApiError::Invalid(fields) => fields
            .0
            .iter()
            .map(|(f, m)| format!("{}: {m}", f.replace('_', " ")))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    me: Me,
    users: Vec<User>,
    roles: [Role; 3],
    error: String,
    notice: String,
}

async fn users_page_with(
    ctx: &Context,
    caller: &Caller,
    status: StatusCode,
    error: String,
    notice: String,
) -> Result<Response, ApiError> {
    let page = UsersPage {
        me: Me::from(caller),
        users: ctx.store.list_users().await?,
        roles: Role::ALL,
        error,
        notice,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn users_page(State(ctx): State<Context>, caller: Caller) -> Result<Response, ApiError> {
    users_page_with(&ctx, &caller, StatusCode::OK, String::new(), String::new()).await
}

#[derive(Deserialize)]
pub struct UsersForm {
    action: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
    /// The delete form's box: a deletion ends the user's sessions and
    /// tokens and cannot be undone.
    #[serde(default)]
    confirm: Confirm,
}

pub async fn users_submit(
    State(ctx): State<Context>,
    caller: Caller,
    Form(form): Form<UsersForm>,
) -> Result<Response, ApiError> {
    let (outcome, notice) = match form.action.as_str() {
        "create" => (
            create_user(&ctx, &caller, &form.user, &form.password, &form.role).await,
            format!("Created the user `{}`.", form.user),
        ),
        "role" => (
            update_user(&ctx, &caller, &form.user, Some(&form.role), None).await,
            format!("`{}` is now {}.", form.user, form.role),
        ),
        "password" => (
            update_user(&ctx, &caller, &form.user, None, Some(&form.password)).await,
            format!("Changed the password of `{}`.", form.user),
        ),
        "delete" if !form.confirm.ticked() => (
            Err(ApiError::BadRequest(format!(
                "Nothing deleted: tick the box beside Delete to confirm that `{}` is deleted",
                form.user
            ))),
            String::new(),
        ),
        "delete" => (
            delete_user(&ctx, &caller, &form.user).await,
            format!("Deleted the user `{}`.", form.user),
        ),
        other => (
            Err(ApiError::BadRequest(format!("unknown action `{other}`"))),
            String::new(),
        ),
    };
    match outcome {
        Ok(())
            if caller.session.is_some() && form.action != "create" && form.user == caller.name =>
        {
            // Changing one's own role or password ends one's sessions.
            Ok(Redirect::to("/login").into_response())
        }
        Ok(()) => users_page_with(&ctx, &caller, StatusCode::OK, String::new(), notice).await,
        Err(e) => {
            users_page_with(
                &ctx,
                &caller,
                StatusCode::UNPROCESSABLE_ENTITY,
                error_text(&e),
                String::new(),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    me: Me,
    tokens: Vec<TokenInfo>,
    users: Vec<User>,
    new_token: Option<NewToken>,
    error: String,
    notice: String,
}

async fn tokens_page_with(
    ctx: &Context,
    caller: &Caller,
    status: StatusCode,
    new_token: Option<NewToken>,
    error: String,
    notice: String,
) -> Result<Response, ApiError> {
    let page = TokensPage {
        me: Me::from(caller),
        tokens: ctx.store.list_tokens().await?,
        users: ctx.store.list_users().await?,
        new_token,
        error,
        notice,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn tokens_page(State(ctx): State<Context>, caller: Caller) -> Result<Response, ApiError> {
    tokens_page_with(
        &ctx,
        &caller,
        StatusCode::OK,
        None,
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
pub struct TokensForm {
    action: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    id: String,
    /// The revoke form's box: whatever uses the token stops working.
    #[serde(default)]
    confirm: Confirm,
}

pub async fn tokens_submit(
    State(ctx): State<Context>,
    caller: Caller,
    Form(form): Form<TokensForm>,
) -> Result<Response, ApiError> {
    let failed = |e: ApiError| (StatusCode::UNPROCESSABLE_ENTITY, error_text(&e));
    let outcome = match form.action.as_str() {
        "create" => {
            let days = match form.expires_in_days.trim() {
                "" => Ok(None),
                text => text.parse::<u32>().map(Some).map_err(|_| {
                    ApiError::invalid("expires_in_days", "must be a whole number of days")
                }),
            };
            let user = Some(form.user.as_str()).filter(|u| !u.is_empty());
            match days {
                Ok(days) => create_token(&ctx, &caller, &form.name, user, days)
                    .await
                    .map(|t| (Some(t), String::new()))
                    .map_err(failed),
                Err(e) => Err(failed(e)),
            }
        }
        "revoke" if !form.confirm.ticked() => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing revoked: tick the box beside Revoke to confirm".to_owned(),
        )),
        "revoke" => match form.id.parse::<i64>() {
            Ok(id) => revoke_token(&ctx, &caller, id)
                .await
                .map(|()| (None, "Revoked the token.".to_owned()))
                .map_err(failed),
            Err(_) => Err((StatusCode::BAD_REQUEST, "no token id".to_owned())),
        },
        other => Err((StatusCode::BAD_REQUEST, format!("unknown action `{other}`"))),
    };
    match outcome {
        Ok((new_token, notice)) => {
            tokens_page_with(
                &ctx,
                &caller,
                StatusCode::OK,
                new_token,
                String::new(),
                notice,
            )
            .await
        }
        Err((status, error)) => {
            tokens_page_with(&ctx, &caller, status, None, error, String::new()).await
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    me: Me,
    entries: Vec<AuditEntry>,
}

pub async fn audit_page(State(ctx): State<Context>, caller: Caller) -> Result<Response, ApiError> {
    let page = AuditPage {
        me: Me::from(&caller),
        entries: ctx.store.audit_entries(500).await?,
    };
    Ok(render(&page)?.into_response())
}
