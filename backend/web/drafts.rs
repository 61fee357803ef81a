//! Passwords typed into an output's form that has not been saved yet: a
//! page never sends a password back to the browser, so after a Test, a
//! refusal or a change of kind the form would come back without them.
//! They wait here, on the server, for the same browser session and the
//! same form (its `draft` field), until the form is saved or they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::Caller;
use crate::auth::crypto;

/// A form left alone this long loses its typed passwords: the stored ones
/// still apply.
const KEPT_FOR: Duration = Duration::from_secs(3600);
/// Drafts kept at most, all sessions together; each holds a few secrets.
const MAX_DRAFTS: usize = 10_000;
/// Secrets one draft holds at most: a form has a few dozen fields.
const MAX_SECRETS: usize = 256;

/// A digest of the session cookie, and the form's draft id.
type Key = ([u8; 32], String);
/// When the draft was last used, and each secret field's typed value.
type Draft = (Instant, HashMap<String, String>);

/// Keyed by a digest of the session cookie and the form's draft id, so
/// that the map holds no credential and a draft is never another
/// session's.
#[derive(Default)]
pub struct Drafts {
    kept: Mutex<HashMap<Key, Draft>>,
}

fn key(caller: &Caller, draft: &str) -> Option<Key> {
    let session = caller.session.as_ref()?;
    if draft.is_empty() || draft.len() > 64 {
        return None;
    }
    Some((crypto::sha256(session.cookie.as_bytes()), draft.to_owned()))
}

impl Drafts {
    /// A new draft id for a form.
    pub fn new_id() -> String {
        crypto::random_token()
    }

    /// Takes what the form typed (`typed`: each secret field and its
    /// value, empty when left empty) and gives back the value of each one
    /// left empty that an earlier try of this form typed. Callers without
    /// a browser session keep nothing.
    pub fn merge(
        &self,
        caller: &Caller,
        draft: &str,
        typed: &[(String, String)],
    ) -> HashMap<String, String> {
        let Some(key) = key(caller, draft) else {
            return HashMap::new();
        };
        let now = Instant::now();
        let mut kept = crate::sync::lock(&self.kept);
        if kept.len() >= MAX_DRAFTS && !kept.contains_key(&key) {
            kept.retain(|_, (at, _)| now.duration_since(*at) < KEPT_FOR);
            if kept.len() >= MAX_DRAFTS {
                kept.clear();
            }
        }
        let entry = kept.entry(key).or_insert_with(|| (now, HashMap::new()));
        if now.duration_since(entry.0) >= KEPT_FOR {
            entry.1.clear();
        }
        entry.0 = now;
        let mut filled = HashMap::new();
        for (field, value) in typed {
            if value.is_empty() {
                if let Some(earlier) = entry.1.get(field) {
                    filled.insert(field.clone(), earlier.clone());
                }
            } else if entry.1.len() < MAX_SECRETS || entry.1.contains_key(field) {
                entry.1.insert(field.clone(), value.clone());
            }
        }
        filled
    }

    /// The form was saved: what it typed is stored now, or given up.
    pub fn forget(&self, caller: &Caller, draft: &str) {
        if let Some(key) = key(caller, draft) {
            crate::sync::lock(&self.kept).remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::web::auth::BrowserSession;

    fn caller(cookie: &str) -> Caller {
        Caller {
            name: "admin".into(),
            user_id: 1,
            role: Role::Admin,
            session: Some(BrowserSession {
                cookie: cookie.into(),
                csrf: "c".into(),
            }),
        }
    }

    #[test]
    fn a_typed_password_comes_back_to_its_session_and_form_only() {
        let drafts = Drafts::default();
        let me = caller("mine");
        let typed = vec![("p.token".to_owned(), "hunter2".to_owned())];
        assert!(drafts.merge(&me, "form1", &typed).is_empty());
        let empty = vec![("p.token".to_owned(), String::new())];
        assert_eq!(
            drafts
                .merge(&me, "form1", &empty)
                .get("p.token")
                .map(String::as_str),
            Some("hunter2")
        );
        // Another form, another session, or none: nothing.
        assert!(drafts.merge(&me, "form2", &empty).is_empty());
        assert!(drafts.merge(&caller("other"), "form1", &empty).is_empty());
        let token_caller = Caller {
            session: None,
            ..caller("x")
        };
        assert!(drafts.merge(&token_caller, "form1", &empty).is_empty());
        // Typed again, the new value wins; once saved, it is gone.
        let changed = vec![("p.token".to_owned(), "s3cret".to_owned())];
        drafts.merge(&me, "form1", &changed);
        assert_eq!(
            drafts
                .merge(&me, "form1", &empty)
                .get("p.token")
                .map(String::as_str),
            Some("s3cret")
        );
        drafts.forget(&me, "form1");
        assert!(drafts.merge(&me, "form1", &empty).is_empty());
    }
}
