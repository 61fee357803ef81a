//! Line templates: `HOST:{cache.host.name};{host_id};{state};{output}`.
//!
//! A placeholder names a field of the event (`{host_id}`, `{_type}`), or a
//! field of an object of the cache that the event refers to
//! (`{cache.host.name}`, `{cache.service.description}`,
//! `{cache.instance.name}`). A missing value renders as nothing. `{{` and
//! `}}` are literal braces. Line breaks inside values are written as `\n` so
//! that one event stays one line.

use std::fmt::Write as _;

use crate::cache::{Cache, Object};
use crate::event::Event;

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Field(String),
    Cached(Object, String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(format!("unmatched `}}` at character {}", at + 1)),
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` at character {}", at + 1))?;
                    let name = rest[..end].trim();
                    for _ in 0..rest[..=end].chars().count() {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(name)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// Appends the line for `event` (without the line break) to `out`.
    pub fn render(&self, event: &Event, cache: &Cache, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(key) => push_field(event, key, out),
                Part::Cached(object, key) => {
                    if let Some(cached) = cache.object_for(*object, event) {
                        push_field(&cached, key, out);
                    }
                }
            }
        }
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    if name.is_empty() {
        return Err("empty placeholder `{}`".into());
    }
    if let Some(path) = name.strip_prefix("cache.") {
        let (object, key) = path
            .split_once('.')
            .ok_or_else(|| format!("`{{{name}}}`: expected `cache.<object>.<field>`"))?;
        let object = Object::from_name(object).ok_or_else(|| {
            format!(
                "`{{{name}}}`: the cache holds `instance`, `host` and `service`, not `{object}`"
            )
        })?;
        return Ok(Part::Cached(object, key.to_owned()));
    }
    Ok(Part::Field(name.to_owned()))
}

fn push_field(event: &Event, key: &str, out: &mut String) {
    let ty = event.event_type();
    let start = out.len();
    match key {
        "_type" => {
            let _ = write!(out, "{}", ty.0);
        }
        "category" => {
            let _ = write!(out, "{}", ty.category());
        }
        "element" => {
            let _ = write!(out, "{}", ty.element());
        }
        _ => {
            if let Some(value) = event.get(key) {
                let _ = write!(out, "{value}");
            }
        }
    }
    if out[start..].contains(['\n', '\r']) {
        let escaped = out[start..].replace('\r', "\\r").replace('\n', "\\n");
        out.truncate(start);
        out.push_str(&escaped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_cache_names_and_braces() {
        let t = Template::parse("HOST:{cache.host.name};{host_id};{{x}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Literal("HOST:".into()),
                Part::Cached(Object::Host, "name".into()),
                Part::Literal(";".into()),
                Part::Field("host_id".into()),
                Part::Literal(";{x}".into()),
            ]
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(Template::parse("{host_id")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("a}b").unwrap_err().contains("unmatched"));
        assert!(Template::parse("{}").unwrap_err().contains("empty"));
        assert!(Template::parse("{cache.user.name}")
            .unwrap_err()
            .contains("not `user`"));
        assert!(Template::parse("{cache.host}")
            .unwrap_err()
            .contains("expected"));
    }

    #[test]
    fn non_ascii_text_survives() {
        let t = Template::parse("é{x}ü").unwrap();
        assert_eq!(t.parts[0], Part::Literal("é".into()));
        assert_eq!(t.parts[2], Part::Literal("ü".into()));
    }
}
