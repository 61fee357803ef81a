use super::*;

/// An admin without workers over a fresh database, with one script to run.
async fn admin(limits: Limits) -> (tempfile::TempDir, OutputAdmin, String) {
    let dir = tempfile::tempdir().unwrap();
    let lua = LuaSettings::for_data_dir(dir.path());
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let script = scripts.join("s.lua");
    std::fs::write(
        &script,
        "function init(conf) end\nfunction write(event) return true end\n",
    )
    .unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let script = script.to_str().unwrap().to_owned();
    (dir, OutputAdmin::offline(store, limits, lua), script)
}

fn lua_spec(name: &str, script: &str) -> OutputSpec {
    OutputSpec {
        kind: "lua".into(),
        path: Some(script.to_owned()),
        parameters: vec![Parameter {
            name: "token".into(),
            ty: ParamType::Password,
            value: "hunter2".into(),
        }],
        ..OutputSpec::blank(name)
    }
}

async fn create(admin: &OutputAdmin, spec: OutputSpec) -> Result<StoredOutput, AdminError> {
    admin
        .create("tester", spec, FieldErrors::default(), StartAt::Head)
        .await
}

#[tokio::test]
async fn max_outputs_and_parameter_limits_refuse_and_store_nothing() {
    let limits = Limits {
        max_outputs: 1,
        max_parameter_value_bytes: 16,
        ..Limits::default()
    };
    let (_dir, admin, script) = admin(limits).await;
    let mut long = lua_spec("long", &script);
    long.parameters[0].value = "x".repeat(17);
    match create(&admin, long).await {
        Err(AdminError::Invalid(errors)) => assert!(!errors.is_empty()),
        other => panic!("{other:?}"),
    }
    create(&admin, lua_spec("one", &script)).await.unwrap();
    match create(&admin, lua_spec("two", &script)).await {
        Err(AdminError::LimitReached(m)) => assert!(m.contains("max_outputs is 1"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(admin.store.count_outputs().await.unwrap(), 1);
}

#[tokio::test]
async fn a_duplicate_name_is_refused() {
    let (_dir, admin, script) = admin(Limits::default()).await;
    create(&admin, lua_spec("o", &script)).await.unwrap();
    assert!(matches!(
        create(&admin, lua_spec("o", &script)).await,
        Err(AdminError::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn an_invalid_definition_is_never_stored_nor_audited() {
    let (_dir, admin, script) = admin(Limits::default()).await;
    let mut bad = lua_spec("bad", &script);
    bad.path = Some("/etc/passwd".into());
    assert!(matches!(
        create(&admin, bad).await,
        Err(AdminError::Invalid(_))
    ));
    let mut unknown = OutputSpec::blank("unknown");
    unknown.kind = "no-such-kind".into();
    assert!(matches!(
        create(&admin, unknown).await,
        Err(AdminError::Invalid(_))
    ));
    assert_eq!(admin.store.count_outputs().await.unwrap(), 0);
    assert!(admin.store.audit_entries(10).await.unwrap().is_empty());
}

/// REST, the form and import all end in `create`/`update`: the entry is
/// the output as the API shows it, whoever the actor.
#[tokio::test]
async fn every_change_is_audited_in_one_shape_without_passwords() {
    let (dir, admin, script) = admin(Limits::default()).await;
    let stored = create(&admin, lua_spec("api", &script)).await.unwrap();
    let config = dir.path().join("central.json");
    std::fs::write(
        &config,
        json!({"centreonBroker": {"output": [{"name": "imported", "type": "lua", "path": script,
            "lua_parameter": [{"name": "token", "type": "password", "value": "hunter2"}]}]}})
        .to_string(),
    )
    .unwrap();
    let report = crate::control::import::import(&config, &admin)
        .await
        .unwrap();
    assert_eq!(report.created, ["imported"]);
    let imported = admin.store.get_output("imported").await.unwrap();
    let entries = admin.store.audit_entries(10).await.unwrap();
    let entry = |target: &str| {
        entries
            .iter()
            .find(|e| e.target == target)
            .unwrap_or_else(|| panic!("no entry for {target}: {entries:?}"))
    };
    assert_eq!(entry("api").action, "output.create");
    assert_eq!(entry("api").actor, "tester");
    assert_eq!(entry("api").detail, output_json(&stored));
    assert_eq!(entry("imported").action, "output.create");
    assert_eq!(entry("imported").actor, crate::control::import::ACTOR);
    assert_eq!(entry("imported").detail, output_json(&imported));
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&entry("api").detail), keys(&entry("imported").detail));
    for e in &entries {
        assert!(!e.detail.to_string().contains("hunter2"), "{e:?}");
    }
}

#[tokio::test]
async fn a_password_without_value_keeps_the_stored_one() {
    let (_dir, admin, script) = admin(Limits::default()).await;
    create(&admin, lua_spec("o", &script)).await.unwrap();
    let keep = ParameterInput {
        name: "token".into(),
        ty: ParamType::Password,
        value: None,
    };
    let (kept, created) = admin
        .set_parameter("tester", "o", keep.clone())
        .await
        .unwrap();
    assert_eq!((kept.value.as_str(), created), ("hunter2", false));
    let stored = admin.store.get_output("o").await.unwrap().spec;
    assert_eq!(stored.parameter("token").unwrap().value, "hunter2");
    // Nothing stored under that name: nothing to keep, said on the field.
    let missing = ParameterInput {
        name: "other".into(),
        ..keep
    };
    match admin.set_parameter("tester", "o", missing).await {
        Err(AdminError::Invalid(errors)) => assert_eq!(errors.0[0].0, "parameters.other"),
        other => panic!("{other:?}"),
    }
    // A stored value that is not a password is never handed out this way.
    let previous = OutputSpec {
        parameters: vec![Parameter {
            name: "url".into(),
            ty: ParamType::String,
            value: "http://x".into(),
        }],
        ..OutputSpec::blank("o")
    };
    let url = ParameterInput {
        name: "url".into(),
        ty: ParamType::Password,
        value: None,
    };
    assert!(url.resolve(Some(&previous)).is_err());
}

#[tokio::test]
async fn actions_on_running_outputs_need_workers() {
    let (_dir, admin, script) = admin(Limits::default()).await;
    create(&admin, lua_spec("o", &script)).await.unwrap();
    assert!(matches!(
        admin.pause("tester", "o").await,
        Err(AdminError::NoWorkers(_))
    ));
    admin.delete("tester", "o").await.unwrap();
    assert!(matches!(
        admin.delete("tester", "o").await,
        Err(AdminError::NotFound(_))
    ));
}

#[test]
fn password_values_are_never_rendered() {
    let stored = StoredOutput {
        spec: lua_spec("o", "/s.lua"),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    let json = output_json(&stored).to_string();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(
        json.contains(r#"{"name":"token","type":"password"}"#),
        "{json}"
    );
}
