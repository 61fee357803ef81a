//! The fallback modules (`luatz.timetable`, `base64`, `crypto`, and the
//! refusal of `cffi`) as a script sees them through `Script::load`, and the
//! rule that a module on disk wins over them. The `crypto` signatures are
//! checked by the real `openssl` CLI, installed by `scripts/setup`.

use std::path::Path;
use std::process::Command;

use crate::lua::{eval, Lab};

/// A lab whose package.path and package.cpath hold only the script's own
/// directory (and an empty one), so that a luatz, base64 or LuaCrypto
/// installed on the test machine cannot answer in place of a fallback.
fn lab() -> Lab {
    let mut lab = Lab::new();
    let nowhere = lab.path("no-system-modules");
    lab.settings.package_path = format!("{}/?.lua", nowhere.display());
    lab.settings.package_cpath = format!("{}/?.so", nowhere.display());
    lab
}

const CALLBACKS: &str = "function init(conf) end\nfunction write(d) return true end\n";

#[test]
fn luatz_timetable_gives_luatz_s_rfc_3339_strings() {
    // luatz's `:rfc_3339()` is "%04u-%02u-%02uT%02u:%02u:%02d.%03d" on the
    // normalised UTC fields: three fractional digits, milliseconds truncated
    // (not rounded, since luatz 0.3), and no "Z" or offset (luatz's
    // doc/timetable.md: "The timezone offset (or Z) is not appended"). The
    // dates were checked with `date -u -d @TS`.
    let lab = lab();
    let script = lab.load(
        &format!(
            r#"
            -- As the PagerDuty and Splunk connectors take it.
            local new_from_timestamp = require "luatz.timetable".new_from_timestamp
            function stamp(ts) return new_from_timestamp(ts):rfc_3339() end
            tt = require "luatz.timetable"
            {CALLBACKS}"#
        ),
        &[],
    );
    for (ts, expected) in [
        ("0", "1970-01-01T00:00:00.000"),
        ("1634025600", "2021-10-12T08:00:00.000"),
        ("1634025600.5", "2021-10-12T08:00:00.500"),
        ("1634025600.123456", "2021-10-12T08:00:00.123"),
        ("1709164800", "2024-02-29T00:00:00.000"),
        ("-1", "1969-12-31T23:59:59.000"),
        ("-86399.5", "1969-12-31T00:00:00.500"),
        ("-631152000", "1950-01-01T00:00:00.000"),
    ] {
        let got: String = eval(&script, &format!("stamp({ts})"));
        assert_eq!(got, expected, "new_from_timestamp({ts}):rfc_3339()");
    }
    let back: i64 = eval(&script, "tt.new_from_timestamp(1634025600):timestamp()");
    assert_eq!(back, 1634025600);
    let fields: String = eval(
        &script,
        "table.concat({ tt.new_from_timestamp(1634025600.5):unpack() }, ' ')",
    );
    assert_eq!(fields, "2021 10 12 8 0 0.5 285 3");
}

#[test]
fn base64_encodes_and_decodes_the_rfc_4648_vectors() {
    let lab = lab();
    let script = lab.load(&format!("base64 = require 'base64'\n{CALLBACKS}"), &[]);
    // RFC 4648 §10.
    for (plain, coded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        let encoded: String = eval(&script, &format!("base64.encode('{plain}')"));
        assert_eq!(encoded, coded, "encode({plain:?})");
        let decoded: String = eval(&script, &format!("base64.decode('{coded}')"));
        assert_eq!(decoded, plain, "decode({coded:?})");
    }
    let error: String = eval(
        &script,
        "select(2, pcall(function() local s = base64.decode('Zm9v*YmFy'); return s end))",
    );
    // A string, as the C modules raise, with the caller's line in front.
    assert!(
        error.contains(":1: base64.decode: This string 'Zm9v*YmFy'") && error.contains("not legal"),
        "{error}"
    );
}

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run openssl ({e}): this test checks signatures with the real \
             OpenSSL CLI. Run scripts/setup (it installs Debian's `openssl`) and try again."
        ),
    }
}

fn openssl_ok(dir: &Path, args: &[&str]) {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Google OAuth code's call, `crypto.sign(hash, data, crypto.pkey.from_pem(pem, true))`,
/// from a script; the signature file is then verified by `openssl dgst`.
const SIGNER: &str = r#"
local crypto = require "crypto"
function init(conf)
  local f = assert(io.open(conf.key, "rb"))
  local pem = f:read("a")
  f:close()
  local key = assert(crypto.pkey.from_pem(pem, true))
  local m = assert(io.open(conf.message, "rb"))
  local message = m:read("a")
  m:close()
  local signature = assert(crypto.sign(conf.digest, message, key))
  local out = assert(io.open(conf.signature, "wb"))
  out:write(signature)
  out:close()
end
function write(d) return true end
"#;

#[test]
fn crypto_signatures_verify_with_openssl() {
    let lab = lab();
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path();
    openssl_ok(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "pkcs8.pem",
        ],
    );
    openssl_ok(
        dir,
        &["pkey", "-in", "pkcs8.pem", "-pubout", "-out", "pub.pem"],
    );
    // The same key in PKCS#1 ("BEGIN RSA PRIVATE KEY").
    openssl_ok(
        dir,
        &[
            "rsa",
            "-in",
            "pkcs8.pem",
            "-traditional",
            "-out",
            "pkcs1.pem",
        ],
    );
    let pkcs8 = std::fs::read_to_string(dir.join("pkcs8.pem")).unwrap();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"), "{pkcs8}");
    let pkcs1 = std::fs::read_to_string(dir.join("pkcs1.pem")).unwrap();
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pkcs1}"
    );
    let message = r#"{"alg":"RS256","typ":"JWT"}.{"iss":"sa@example.iam.gserviceaccount.com"}"#;
    std::fs::write(dir.join("msg"), message).unwrap();
    std::fs::write(dir.join("other"), format!("{message}!")).unwrap();

    for (key, digest) in [
        ("pkcs8.pem", "sha256WithRSAEncryption"),
        ("pkcs1.pem", "sha256"),
    ] {
        let sig = format!("{key}.sig");
        let path = |name: &str| dir.join(name).display().to_string();
        lab.try_load(
            SIGNER,
            &[
                ("key", &path(key)),
                ("message", &path("msg")),
                ("digest", digest),
                ("signature", &path(&sig)),
            ],
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(std::fs::metadata(dir.join(&sig)).unwrap().len(), 256);
        let verify = |file: &str| {
            openssl(
                dir,
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    &sig,
                    file,
                ],
            )
        };
        let good = verify("msg");
        assert!(
            good.status.success(),
            "{key}: {}{}",
            String::from_utf8_lossy(&good.stdout),
            String::from_utf8_lossy(&good.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&good.stdout).trim(), "Verified OK");
        // The peer does check: the same signature does not fit another message.
        assert!(!verify("other").status.success(), "{key}");
    }

    // A public key reads (without `true`) but cannot sign.
    let script = lab.load(
        &format!(
            "crypto = require 'crypto'\n\
             local f = assert(io.open('{}', 'rb'))\n\
             public = assert(crypto.pkey.from_pem(f:read('a')))\n\
             f:close()\n{CALLBACKS}",
            dir.join("pub.pem").display()
        ),
        &[],
    );
    assert_eq!(
        eval::<String>(&script, "tostring(public)"),
        "crypto.pkey (RSA-2048 public key)"
    );
    let refused: String = eval(&script, "select(2, crypto.sign('sha256', 'data', public))");
    assert!(refused.contains("signing needs a private key"), "{refused}");
}

#[test]
fn crypto_bad_keys_and_digests_say_what_is_wrong() {
    let lab = lab();
    let script = lab.load(&format!("crypto = require 'crypto'\n{CALLBACKS}"), &[]);
    // LuaCrypto's convention, which oauth.lua relies on: nil and a message.
    let message: String = eval(
        &script,
        "(function() local k, e = crypto.pkey.from_pem('not a key', true); \
         assert(k == nil); return e end)()",
    );
    assert!(
        message.starts_with("crypto.pkey.from_pem: no PEM block found"),
        "{message}"
    );
    let message: String = eval(
        &script,
        "select(2, crypto.pkey.from_pem('-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n', true))",
    );
    assert!(
        message.starts_with("crypto.pkey.from_pem: not a valid PKCS#8 RSA private key"),
        "{message}"
    );
    let error: String = eval(&script, "select(2, pcall(crypto.sign, 'md5', 'data', nil))");
    assert!(error.contains("unsupported digest type 'md5'"), "{error}");
    let error: String = eval(
        &script,
        "select(2, pcall(crypto.sign, 'sha256', 'data', 'a string'))",
    );
    assert!(
        error.contains("crypto.pkey expected, got string"),
        "{error}"
    );
}

#[test]
fn cffi_fails_with_a_message_about_kafka() {
    let lab = lab();
    // The Kafka library's first lines: LuaJIT's ffi, then cffi-lua.
    std::fs::write(
        lab.path("kafkalib.lua"),
        "local status, ffi = pcall(require, 'ffi')\n\
         if not status then\n    ffi = require 'cffi'\nend\n\
         return ffi\n",
    )
    .unwrap();
    let Err(error) = lab.try_load(&format!("require 'kafkalib'\n{CALLBACKS}"), &[]) else {
        panic!("a script needing cffi loaded");
    };
    assert!(error.contains("could not be compiled"), "{error}");
    assert!(
        error.contains("kafkalib.lua:3: module 'cffi' is not available in brokerstream"),
        "{error}"
    );
    assert!(
        error.contains("Kafka would need a native Kafka output, which brokerstream does not have"),
        "{error}"
    );
}

#[test]
fn a_module_on_disk_wins_over_the_fallback() {
    let lab = lab();
    std::fs::write(
        lab.path("base64.lua"),
        "return { marker = 'base64 from disk' }\n",
    )
    .unwrap();
    std::fs::create_dir(lab.path("luatz")).unwrap();
    std::fs::write(
        lab.path("luatz/timetable.lua"),
        "return { marker = 'luatz from disk' }\n",
    )
    .unwrap();
    let script = lab.load(
        &format!("b = require 'base64'\nt = require 'luatz.timetable'\n{CALLBACKS}"),
        &[],
    );
    assert_eq!(eval::<String>(&script, "b.marker"), "base64 from disk");
    assert_eq!(eval::<String>(&script, "t.marker"), "luatz from disk");
    assert!(eval::<bool>(
        &script,
        "b.encode == nil and t.new_from_timestamp == nil"
    ));
    // `crypto` is not on disk here, so the fallback still answers for it.
    assert!(eval::<bool>(
        &script,
        "type(require('crypto').sign) == 'function'"
    ));
}
