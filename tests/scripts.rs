//! Scripts stay in the script directories: every way a `path`, an upload
//! or the scripts API could reach a file elsewhere (`..`, absolute paths,
//! symbolic links to files and directories, odd names) is refused, over
//! HTTP, and nothing outside changes.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use brokerstream::config::{BbdoConfig, Config, LuaFileConfig};

use crate::common::*;
use crate::web::Multipart;

const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
const SCRIPT: &str = "function init(conf) end\nfunction write(e) return true end\n";

/// A data directory with its script directory, a second script directory,
/// and a directory outside both holding a script.
struct Layout {
    _root: tempfile::TempDir,
    data: PathBuf,
    scripts: PathBuf,
    extra: PathBuf,
    outside: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let scripts = data.join("scripts");
        let extra = root.path().join("extra");
        let outside = root.path().join("outside");
        for dir in [&scripts, &extra, &outside] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(outside.join("outside.lua"), SCRIPT).unwrap();
        Layout {
            data,
            scripts,
            extra,
            outside,
            _root: root,
        }
    }

    async fn start(&self) -> Server {
        Server::start_with(Config {
            data_dir: self.data.clone(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            bbdo: BbdoConfig::disabled(),
            lua: LuaFileConfig {
                script_dirs: Some(vec![self.scripts.clone(), self.extra.clone()]),
                ..LuaFileConfig::default()
            },
            ..Config::default()
        })
        .await
    }

    /// The outside directory is as the layout made it.
    fn assert_outside_untouched(&self) {
        assert_eq!(
            names(&self.outside),
            vec!["outside.lua"],
            "something was written outside"
        );
        assert_eq!(
            std::fs::read_to_string(self.outside.join("outside.lua")).unwrap(),
            SCRIPT
        );
        let root = self.data.parent().unwrap();
        assert_eq!(
            names(root),
            vec!["data", "extra", "outside"],
            "something was written beside the data directory"
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn lua_output(name: &str, path: &str) -> Value {
    json!({"name": name, "kind": "lua", "path": path})
}

#[tokio::test]
async fn an_output_path_must_lead_inside_a_script_directory() {
    let l = Layout::new();
    std::fs::write(l.scripts.join("ok.lua"), SCRIPT).unwrap();
    std::fs::write(l.scripts.join("notes.txt"), SCRIPT).unwrap();
    std::fs::write(l.extra.join("extra.lua"), SCRIPT).unwrap();
    std::fs::create_dir(l.scripts.join("subdir.lua")).unwrap();
    std::os::unix::fs::symlink(l.outside.join("outside.lua"), l.scripts.join("link.lua")).unwrap();
    std::os::unix::fs::symlink(&l.outside, l.scripts.join("linkdir")).unwrap();
    // A link that stays inside is followed.
    std::os::unix::fs::symlink(l.scripts.join("ok.lua"), l.scripts.join("alias.lua")).unwrap();
    let server = l.start().await;

    let outside = l.outside.join("outside.lua");
    let through_dots = format!("{}/../outside/outside.lua", l.scripts.display());
    let refused = [
        ("../outside.lua".to_owned(), "`..`"),
        ("../../outside/outside.lua".to_owned(), "`..`"),
        (through_dots, "`..`"),
        (
            outside.display().to_string(),
            "outside the script directories",
        ),
        ("link.lua".to_owned(), "outside the script directories"),
        (
            "linkdir/outside.lua".to_owned(),
            "outside the script directories",
        ),
        ("subdir.lua".to_owned(), "is not a file"),
        ("missing.lua".to_owned(), "cannot open script"),
        ("".to_owned(), "must not be empty"),
    ];
    for (i, (path, why)) in refused.iter().enumerate() {
        let created = server
            .post_json("/api/v1/outputs", &lua_output(&format!("o{i}"), path))
            .await;
        let (status, body) = answer(created).await;
        assert_eq!(status, 422, "{path}: {body}");
        let message = body["fields"]["path"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{path}: {body}");
    }
    for (i, path) in [
        "ok.lua".to_owned(),
        l.scripts.join("ok.lua").display().to_string(),
        "alias.lua".to_owned(),
        l.extra.join("extra.lua").display().to_string(),
        // The code does not restrict extensions: Centreon does not either.
        "notes.txt".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let created = server
            .post_json("/api/v1/outputs", &lua_output(&format!("good{i}"), path))
            .await;
        let (status, body) = answer(created).await;
        assert_eq!(status, 201, "{path}: {body}");
    }
    // Changing an output's path is checked the same way.
    let patched = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/good0",
            &json!({"path": "link.lua"}),
        )
        .await;
    assert_eq!(answer(patched).await.0, 422);
    let put = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/good0",
            &json!({"kind": "lua", "path": "../outside.lua"}),
        )
        .await;
    assert_eq!(answer(put).await.0, 422);
    // And so is the form's.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "formed")
        .text("path", "linkdir/outside.lua")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains(r#"id="path-error""#), "{page}");
    // The form offers only what an output can run.
    let (_, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "formed")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert!(page.contains(r#"<option value="ok.lua""#), "{page}");
    assert!(!page.contains(r#"<option value="link.lua""#), "{page}");
    server.stop().await;
    l.assert_outside_untouched();
}

#[tokio::test]
async fn uploads_land_in_the_script_directory_under_a_plain_name() {
    let l = Layout::new();
    std::os::unix::fs::symlink(l.outside.join("outside.lua"), l.scripts.join("trap.lua")).unwrap();
    let server = l.start().await;
    let upload = |output: &str, file_name: &str, content: &[u8]| {
        Multipart::new()
            .text("kind", "lua")
            .text("name", output)
            .text("path", "")
            .file("script_file", file_name, content)
            .text("action", "save")
    };

    // Directories in the name are dropped (browsers may send a whole path):
    // the file lands in the script directory, under its last component.
    for (i, (sent, saved)) in [
        ("../up1.lua", "up1.lua"),
        ("../../../../tmp/up2.lua", "up2.lua"),
        ("a/up3.lua", "up3.lua"),
        ("C:\\Users\\me\\up4.lua", "up4.lua"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, location, page) = upload(&format!("u{i}"), sent, SCRIPT.as_bytes())
            .post(&server, "/outputs/new")
            .await;
        assert_eq!(status, 303, "{sent}: {page}");
        assert_eq!(location, format!("/outputs/u{i}"));
        assert!(l.scripts.join(saved).is_file(), "{sent}");
    }
    // Names that are no plain script name are refused on the upload field.
    for (i, sent) in [
        "..",
        "up/..",
        ".hidden.lua",
        "script.sh",
        "a b.lua",
        "x.lua/",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, _, page) = upload(&format!("bad{i}"), sent, SCRIPT.as_bytes())
            .post(&server, "/outputs/new")
            .await;
        assert_eq!(status, 422, "{sent}: {page}");
        assert!(page.contains(r#"id="upload-error""#), "{sent}: {page}");
    }
    // A NUL in the name: refused, whether by the form reader or the check.
    let (status, _, _) = upload("nul", "nul\0.lua", SCRIPT.as_bytes())
        .post(&server, "/outputs/new")
        .await;
    assert!(status == 400 || status == 422, "{status}");
    // A link in the directory is not written through, nor replaced.
    let (status, _, page) = upload("trapped", "trap.lua", b"os.execute('evil')")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("not a regular file"), "{page}");
    // An existing script is not replaced by an upload.
    let (status, _, page) = upload("again", "up1.lua", b"-- other")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("exists already"), "{page}");
    assert_eq!(
        std::fs::read_to_string(l.scripts.join("up1.lua")).unwrap(),
        SCRIPT
    );
    // Larger than the limit: refused with the limit, nothing saved.
    let big = vec![b'-'; MAX_SCRIPT_BYTES + 1];
    let (status, _, page) = upload("big", "big.lua", &big)
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("is larger than 1024 KiB"), "{page}");
    let exact = vec![b'-'; MAX_SCRIPT_BYTES];
    let (status, _, page) = upload("exact", "exact.lua", &exact)
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 303, "{page}");
    server.stop().await;
    assert_eq!(
        names(&l.scripts),
        vec![
            "exact.lua",
            "trap.lua",
            "up1.lua",
            "up2.lua",
            "up3.lua",
            "up4.lua"
        ]
    );
    l.assert_outside_untouched();
}

/// Sends a request as written, bypassing the URL normalisation of HTTP
/// clients (which would resolve a `..` segment before sending it).
async fn raw_request(server: &Server, method: &str, path: &str) -> u16 {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 4\r\nConnection: close\r\n"
    );
    let credentials = basic_auth("admin", ADMIN_PASSWORD);
    request.push_str(&format!(
        "Authorization: {}\r\n",
        credentials.to_str().unwrap()
    ));
    request.push_str("\r\n-- x");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

async fn put_script(server: &Server, name: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = server
        .client
        .put(server.url(&format!("/api/v1/scripts/{name}")))
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// A script that records `version` at each `init`.
fn versioned(version: &str) -> String {
    format!(
        "function init(conf)\n  local f = assert(io.open(conf.out, 'a'))\n  f:write('{version}\\n')\n  f:close()\nend\nfunction write(e) return true end\n"
    )
}

#[tokio::test]
async fn the_scripts_api_lists_writes_replaces_and_deletes_inside_the_directory() {
    let l = Layout::new();
    std::fs::write(l.extra.join("extra.lua"), SCRIPT).unwrap();
    std::os::unix::fs::symlink(l.outside.join("outside.lua"), l.scripts.join("trap.lua")).unwrap();
    std::os::unix::fs::symlink(l.outside.join("outside.lua"), l.extra.join("trap2.lua")).unwrap();
    let server = l.start().await;

    // The list: what an output can run, named as `path` takes it.
    let listed = server.get_json("/api/v1/scripts").await;
    let extra_path = l.extra.join("extra.lua").display().to_string();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["path"], extra_path.as_str());
    assert_eq!(listed[0]["size"], SCRIPT.len());
    assert!(listed[0]["modified"].is_string(), "{listed}");

    let (status, body) = put_script(&server, "a.lua", SCRIPT).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "a.lua");
    assert_eq!(body["size"], SCRIPT.len());
    let text = server
        .get("/api/v1/scripts/a.lua")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, SCRIPT);
    let listed = server.get_json("/api/v1/scripts").await;
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["a.lua", extra_path.as_str()]);

    // Replacing a script restarts the outputs that run it on the new text.
    let out = l.data.join("versions.log");
    let (status, _) = put_script(&server, "runner.lua", versioned("v1")).await;
    assert_eq!(status, 201);
    let created = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "runner", "kind": "lua", "path": "runner.lua", "parameters": [
                {"name": "out", "type": "string", "value": out.to_str().unwrap()}]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(wait_lines(&out, 1).await, vec!["v1"]);
    let (status, body) = put_script(&server, "runner.lua", versioned("v2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], json!(["runner"]));
    assert_eq!(wait_lines(&out, 2).await, vec!["v1", "v2"]);

    // Names with a directory, a NUL, a backslash, a leading dot, another
    // extension: 422 on `name`, nothing written anywhere.
    for name in [
        "..%2Fescape.lua",
        "..%2F..%2Fescape.lua",
        "sub%2Fescape.lua",
        "back%5Cslash.lua",
        "nul%00.lua",
        ".hidden.lua",
        "escape.sh",
        "escape",
    ] {
        let (status, body) = put_script(&server, name, SCRIPT).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body["fields"]["name"].is_string(), "{name}: {body}");
        let deleted = server
            .send_json(
                Method::DELETE,
                &format!("/api/v1/scripts/{name}"),
                &json!({}),
            )
            .await;
        assert_eq!(deleted.status(), 422, "{name}");
    }
    // A literal `..` segment, as a raw client could send it.
    for path in ["/api/v1/scripts/..", "/api/v1/scripts/../x.lua"] {
        let status = raw_request(&server, "PUT", path).await;
        assert!(
            status == 422 || status == 404 || status == 400,
            "{path}: {status}"
        );
    }
    // A link in the directory: neither written through nor replaced.
    let (status, body) = put_script(&server, "trap.lua", "os.execute('evil')").await;
    assert_eq!(status, 409, "{body}");
    // Over the limit: 413 with the limit; at the limit: taken.
    let (status, body) = put_script(&server, "big.lua", vec![b'-'; MAX_SCRIPT_BYTES + 1]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["limit_bytes"], MAX_SCRIPT_BYTES);
    assert!(!l.scripts.join("big.lua").exists());
    let (status, _) = put_script(&server, "big.lua", vec![b'-'; MAX_SCRIPT_BYTES]).await;
    assert_eq!(status, 201);

    // Deleting: refused while an output runs it, naming the output.
    let deleted = server
        .send_json(Method::DELETE, "/api/v1/scripts/runner.lua", &json!({}))
        .await;
    let (status, body) = answer(deleted).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("runner"), "{body}");
    let deleted = server
        .send_json(Method::DELETE, "/api/v1/outputs/runner", &json!({}))
        .await;
    assert_eq!(deleted.status(), 204);
    for (name, expected) in [
        ("runner.lua", 204),
        ("runner.lua", 404),
        // A link is removed, never what it leads to.
        ("trap.lua", 204),
        // Only the first directory is managed.
        ("extra.lua", 404),
    ] {
        let deleted = server
            .send_json(
                Method::DELETE,
                &format!("/api/v1/scripts/{name}"),
                &json!({}),
            )
            .await;
        assert_eq!(deleted.status(), expected, "DELETE {name}");
    }
    assert!(l.extra.join("extra.lua").exists());
    // No temporary file is left behind.
    assert_eq!(names(&l.scripts), vec!["a.lua", "big.lua"]);
    server.stop().await;
    l.assert_outside_untouched();
}

#[tokio::test]
async fn a_script_lua_cannot_compile_is_refused_with_its_line_and_nothing_is_written() {
    let l = Layout::new();
    let server = l.start().await;
    assert_eq!(put_script(&server, "fix.lua", SCRIPT).await.0, 201);

    let broken = "#!/usr/bin/lua\nfunction init(conf) end\nfunction write(e)\n  return (\nend\n";
    let (status, body) = put_script(&server, "fix.lua", broken).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["line"], 5, "{body}");
    let lua = body["lua_error"].as_str().unwrap();
    assert!(lua.starts_with("fix.lua:5:"), "{lua}");
    assert!(body["error"].as_str().unwrap().contains(lua), "{body}");
    // The script that worked is still there, and so is nothing else.
    assert_eq!(
        std::fs::read_to_string(l.scripts.join("fix.lua")).unwrap(),
        SCRIPT
    );
    assert_eq!(names(&l.scripts), vec!["fix.lua"]);
    // A new name that does not compile is not created either.
    assert_eq!(put_script(&server, "new.lua", "x = = 1").await.0, 422);
    assert!(!l.scripts.join("new.lua").exists());

    // A BOM and a `#!` line are skipped as the runtime skips them; the
    // replacement says so in the audit log.
    let fixed = format!("\u{feff}#!/usr/bin/lua\n{SCRIPT}");
    let (status, body) = put_script(&server, "fix.lua", fixed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read_to_string(l.scripts.join("fix.lua")).unwrap(),
        fixed
    );
    let audit = server.get_json("/api/v1/audit").await;
    let entries = audit.as_array().cloned().unwrap_or_default();
    let last = entries
        .iter()
        .find(|e| e["action"] == "script.put")
        .unwrap_or_else(|| panic!("no script.put entry: {audit}"));
    assert_eq!(last["target"], "fix.lua", "{last}");
    assert_eq!(last["detail"]["replaced"], true, "{last}");
    server.stop().await;
    l.assert_outside_untouched();
}
