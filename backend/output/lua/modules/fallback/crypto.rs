//! `crypto`: the part of LuaCrypto that the Google connectors' OAuth code
//! (`google/auth/oauth.lua`) calls to sign a service account's JWT (RS256):
//!
//! - `crypto.pkey.from_pem(pem, true)`: an RSA private key, from PKCS#8
//!   (`BEGIN PRIVATE KEY`, what Google's JSON key files hold) or PKCS#1
//!   (`BEGIN RSA PRIVATE KEY`). Without `true`, a public key (`BEGIN PUBLIC
//!   KEY` or `BEGIN RSA PUBLIC KEY`).
//! - `crypto.sign(digest, data, key)`: the raw RSASSA-PKCS1-v1_5 signature
//!   bytes of `data` hashed with `digest`: `sha256`, `sha384` or `sha512`,
//!   under OpenSSL's names too (`SHA256`, `RSA-SHA256`,
//!   `sha256WithRSAEncryption`, which is what oauth.lua passes), since
//!   LuaCrypto looks them up with `EVP_get_digestbyname`.
//!
//! Errors follow LuaCrypto, because oauth.lua is written for its
//! conventions: a key that cannot be read gives `nil, message` (oauth.lua
//! tests `if not private_key_object` and logs), and so does a signature that
//! cannot be made; an unknown digest name is a Lua error naming it, as
//! LuaCrypto's argument error is. `crypto.digest`, `crypto.hmac` and the rest
//! of LuaCrypto are not provided: no catalogue connector calls them.
//!
//! The RSA arithmetic is the `rsa` crate's (RustCrypto), blinded with the OS
//! random generator. rsa 0.9 carries advisory RUSTSEC-2023-0071 (Marvin:
//! private-key operations are not constant-time); here the key only signs
//! the connector's own JWT claims, on the broker's host, which gives an
//! attacker no decryption oracle to time.

use mlua::{AnyUserData, Function, Lua, LuaString, MultiValue, UserData, Value};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

enum PKey {
    Private(Box<RsaPrivateKey>),
    Public(RsaPublicKey),
}

impl UserData for PKey {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, key, ()| {
            Ok(match key {
                PKey::Private(k) => format!("crypto.pkey (RSA-{} private key)", k.size() * 8),
                PKey::Public(k) => format!("crypto.pkey (RSA-{} public key)", k.size() * 8),
            })
        });
    }
}

/// The label and text of the first PEM block, from its BEGIN line to its END
/// line: OpenSSL skips text around the block, the RustCrypto decoders do not.
fn pem_block(text: &str) -> Option<(&str, &str)> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label = &rest[..rest.find("-----")?];
    let end_line = format!("-----END {label}-----");
    let end = text[begin..].find(&end_line)? + begin + end_line.len();
    Some((label, &text[begin..end]))
}

fn read_key(text: &str, private: bool) -> Result<PKey, String> {
    let Some((label, block)) = pem_block(text) else {
        return Err(format!(
            "no PEM block found (expected a '-----BEGIN {}-----' line and its END line)",
            if private { "PRIVATE KEY" } else { "PUBLIC KEY" }
        ));
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("not a valid {what}: {e}");
    match (private, label) {
        (true, "PRIVATE KEY") => RsaPrivateKey::from_pkcs8_pem(block)
            .map(|k| PKey::Private(Box::new(k)))
            .map_err(|e| bad("PKCS#8 RSA private key", &e)),
        (true, "RSA PRIVATE KEY") => RsaPrivateKey::from_pkcs1_pem(block)
            .map(|k| PKey::Private(Box::new(k)))
            .map_err(|e| bad("PKCS#1 RSA private key", &e)),
        (true, "ENCRYPTED PRIVATE KEY") => {
            Err("the private key is encrypted; only unencrypted keys can be read".to_owned())
        }
        (false, "PUBLIC KEY") => RsaPublicKey::from_public_key_pem(block)
            .map(PKey::Public)
            .map_err(|e| bad("RSA public key", &e)),
        (false, "RSA PUBLIC KEY") => RsaPublicKey::from_pkcs1_pem(block)
            .map(PKey::Public)
            .map_err(|e| bad("PKCS#1 RSA public key", &e)),
        (true, other) => Err(format!(
            "a '{other}' PEM block is not an RSA private key \
             (expected 'PRIVATE KEY' or 'RSA PRIVATE KEY'; only RSA keys are supported)"
        )),
        (false, other) => Err(format!(
            "a '{other}' PEM block is not a public key (pass true as the second \
             argument to read a private key)"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

fn hash_named(name: &str) -> Option<Hash> {
    let name = name.to_ascii_lowercase();
    let bits = name
        .strip_prefix("rsa-")
        .or_else(|| name.strip_suffix("withrsaencryption"))
        .unwrap_or(&name);
    match bits {
        "sha256" => Some(Hash::Sha256),
        "sha384" => Some(Hash::Sha384),
        "sha512" => Some(Hash::Sha512),
        _ => None,
    }
}

fn sign(key: &RsaPrivateKey, hash: Hash, data: &[u8]) -> rsa::Result<Vec<u8>> {
    let mut rng = rand::rngs::OsRng;
    match hash {
        Hash::Sha256 => key.sign_with_rng(
            &mut rng,
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(data),
        ),
        Hash::Sha384 => key.sign_with_rng(
            &mut rng,
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(data),
        ),
        Hash::Sha512 => key.sign_with_rng(
            &mut rng,
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(data),
        ),
    }
}

/// What `super::raising` turns into results: `true, values...`.
fn results(values: Vec<Value>) -> MultiValue {
    let mut all = vec![Value::Boolean(true)];
    all.extend(values);
    MultiValue::from_vec(all)
}

/// LuaCrypto's soft failure: `nil, message`.
fn failure(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    Ok(results(vec![
        Value::Nil,
        Value::String(lua.create_string(message)?),
    ]))
}

/// A Lua error, raised by `super::raising`.
fn raise(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Boolean(false),
        Value::String(lua.create_string(message)?),
    ]))
}

/// A string argument, numbers accepted as `luaL_checkstring` does.
fn string_arg(lua: &Lua, value: Value) -> mlua::Result<Result<LuaString, String>> {
    let type_name = value.type_name();
    Ok(lua
        .coerce_string(value)?
        .ok_or_else(|| format!("string expected, got {type_name}")))
}

fn from_pem(lua: &Lua, (pem, private): (Value, Value)) -> mlua::Result<MultiValue> {
    let pem = match string_arg(lua, pem)? {
        Ok(pem) => pem,
        Err(e) => return raise(lua, format!("bad argument #1 to 'from_pem' ({e})")),
    };
    // LuaCrypto reads a private key only for a boolean true.
    let private = matches!(private, Value::Boolean(true));
    match read_key(&pem.to_string_lossy(), private) {
        Ok(key) => Ok(results(vec![Value::UserData(lua.create_userdata(key)?)])),
        Err(e) => failure(lua, format!("crypto.pkey.from_pem: {e}")),
    }
}

fn sign_lua(lua: &Lua, (digest, data, key): (Value, Value, Value)) -> mlua::Result<MultiValue> {
    let digest = match string_arg(lua, digest)? {
        Ok(digest) => digest.to_string_lossy(),
        Err(e) => return raise(lua, format!("bad argument #1 to 'sign' ({e})")),
    };
    let Some(hash) = hash_named(&digest) else {
        return raise(
            lua,
            format!(
                "bad argument #1 to 'sign' (unsupported digest type '{digest}'; \
                 brokerstream's crypto offers sha256, sha384 and sha512)"
            ),
        );
    };
    let data = match string_arg(lua, data)? {
        Ok(data) => data,
        Err(e) => return raise(lua, format!("bad argument #2 to 'sign' ({e})")),
    };
    let key: AnyUserData = match key {
        Value::UserData(ud) if ud.is::<PKey>() => ud,
        other => {
            return raise(
                lua,
                format!(
                    "bad argument #3 to 'sign' (crypto.pkey expected, got {})",
                    other.type_name()
                ),
            )
        }
    };
    let key = key.borrow::<PKey>()?;
    let PKey::Private(private) = &*key else {
        return failure(
            lua,
            "crypto.sign: the key is a public key; signing needs a private key".to_owned(),
        );
    };
    match sign(private, hash, &data.as_bytes()) {
        Ok(signature) => Ok(results(vec![Value::String(lua.create_string(&signature)?)])),
        Err(e) => failure(lua, format!("crypto.sign: {e}")),
    }
}

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, _: MultiValue| {
        let m = lua.create_table()?;
        let pkey = lua.create_table()?;
        let from_pem = lua.create_function(from_pem)?;
        pkey.set("from_pem", super::raising(lua, "crypto", from_pem)?)?;
        m.set("pkey", pkey)?;
        let sign = lua.create_function(sign_lua)?;
        m.set("sign", super::raising(lua, "crypto", sign)?)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_as_openssl_spells_them() {
        for name in ["sha256", "SHA256", "RSA-SHA256", "sha256WithRSAEncryption"] {
            assert_eq!(hash_named(name), Some(Hash::Sha256), "{name}");
        }
        assert_eq!(hash_named("sha512WithRSAEncryption"), Some(Hash::Sha512));
        assert_eq!(hash_named("sha1"), None);
        assert_eq!(hash_named("md5WithRSAEncryption"), None);
        assert_eq!(hash_named(""), None);
    }

    #[test]
    fn pem_blocks_are_found_inside_other_text() {
        let text =
            "key:\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\ntrailer";
        let (label, block) = pem_block(text).expect("a block");
        assert_eq!(label, "RSA PRIVATE KEY");
        assert!(block.starts_with("-----BEGIN") && block.ends_with("KEY-----"));
        assert!(pem_block("-----BEGIN PRIVATE KEY-----\nAAAA\n").is_none());
        assert!(pem_block("no pem at all").is_none());
    }

    #[test]
    fn unreadable_keys_say_why() {
        let Err(e) = read_key("nothing", true) else {
            panic!("read")
        };
        assert!(e.contains("no PEM block"), "{e}");
        let garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
        let Err(e) = read_key(garbage, true) else {
            panic!("read")
        };
        assert!(e.starts_with("not a valid PKCS#8 RSA private key"), "{e}");
        let ec = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let Err(e) = read_key(ec, true) else {
            panic!("read")
        };
        assert!(
            e.contains("'EC PRIVATE KEY'") && e.contains("only RSA"),
            "{e}"
        );
    }
}
