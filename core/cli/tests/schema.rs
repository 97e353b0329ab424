//! `orchestrix schema check | register | list`, run as the built binary
//! against an embedded registry (over REST, and straight in a SQLite file).

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use orchestrix_schema_registry::{EmbeddedRegistry, server};

const V1: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"},{"name":"branch","type":"string","default":"main"}]}"#;
const V3_BREAKING: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"},{"name":"branch","type":"string","default":"main"},{"name":"iban","type":"string"}]}"#;

async fn orchestrix(args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let out: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_orchestrix"))
            .args(&args)
            .env_remove("ORCHESTRIX_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_register_and_list_against_a_rest_registry() {
    let running = server::serve(
        Arc::new(EmbeddedRegistry::memory()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let url = running.url();
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(dir.path(), "com.acme.bank.Opened.v1.avsc", V1);

    // A new subject has nothing to be incompatible with.
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &v1]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("new subject"), "{out}");

    let (code, out) = orchestrix(&["schema", "register", "--registry", &url, &v1]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("com.acme.bank.Opened") && out.contains("version 1 (id 1)"),
        "{out}"
    );

    // A compatible change passes the check and registers.
    let v2 = write(dir.path(), "com.acme.bank.Opened.v2.avsc", V2);
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &v2]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("compatible (BACKWARD)"), "{out}");
    let (code, out) = orchestrix(&["schema", "register", "--registry", &url, &v2]).await;
    assert_eq!(code, 0, "{out}");

    // An incompatible change fails the check, with the reason; so does the directory.
    let v3 = write(dir.path(), "com.acme.bank.Opened.v3.avsc", V3_BREAKING);
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &v3]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL com.acme.bank.Opened"), "{out}");
    assert!(
        out.contains("field `iban` added without a default"),
        "{out}"
    );
    let dir_arg = dir.path().display().to_string();
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &dir_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("already registered as version 1")
            && out.contains("already registered as version 2"),
        "{out}"
    );
    assert!(out.contains("3 schema(s) checked: 2 ok, 1 failed"), "{out}");
    // And registration refuses it.
    let (code, out) = orchestrix(&["schema", "register", "--registry", &url, &v3]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("iban"), "{out}");

    let (code, out) = orchestrix(&["schema", "list", "--registry", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("com.acme.bank.Opened\tversions 1,2\tlatest id 2\tBACKWARD"),
        "{out}"
    );

    // A file that is not a schema fails the check readably.
    let bad = write(
        dir.path(),
        "broken.avsc",
        r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#,
    );
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &bad]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("invalid schema"), "{out}");

    running.shutdown().await.unwrap();
    // An unreachable registry is an error of its own (exit 2), not a verdict.
    let (code, out) = orchestrix(&["schema", "check", "--registry", &url, &v2]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot reach the schema registry"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_an_embedded_registry_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("events.db").display());
    let v1 = write(dir.path(), "v1.avsc", V1);
    let v3 = write(dir.path(), "v3.avsc", V3_BREAKING);

    let (code, out) = orchestrix(&["schema", "register", "--registry-db", &db, &v1]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = orchestrix(&["schema", "check", "--registry-db", &db, &v3]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("field `iban` added without a default"),
        "{out}"
    );
    let (code, out) = orchestrix(&[
        "schema",
        "check",
        "--registry-db",
        &db,
        "--subject",
        "custom",
        &v3,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = orchestrix(&["schema", "list", "--registry-db", &db]).await;
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");

    // Usage errors.
    let (code, _) = orchestrix(&["schema", "check", &v1]).await;
    assert_eq!(code, 2, "a registry is required");
    let (code, out) = orchestrix(&["schema", "list", "--registry-db", "mysql://x"]).await;
    assert_eq!(code, 2, "{out}");
}

/// The repository's own schema files (the banking demo's) are a compatible
/// history: registered in order into a fresh registry, each version passes
/// the registry's BACKWARD check, and `schema check` passes on all of them.
/// A schema change that breaks a consumer fails this test in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_schema_files_are_a_compatible_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("registry.db").display());
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../../demos/banking/schemas");
    let (code, out) = orchestrix(&["schema", "register", "--registry-db", &db, schemas]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = orchestrix(&["schema", "check", "--registry-db", &db, schemas]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("16 schema(s) checked: 16 ok"), "{out}");
}

/// A directory's versions are taken in numeric order: v10 after v9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_walks_each_history_in_version_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("registry.db").display());
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    write(&schemas, "com.acme.bank.Opened.v10.avsc", V2);
    write(&schemas, "com.acme.bank.Opened.v9.avsc", V1);
    let (code, out) = orchestrix(&[
        "schema",
        "register",
        "--registry-db",
        &db,
        &schemas.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let v9 = out
        .find("Opened.v9.avsc")
        .unwrap_or_else(|| panic!("{out}"));
    let v10 = out
        .find("Opened.v10.avsc")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(v9 < v10, "v9 registered first:\n{out}");
}
