//! `cargo run -p orchestrix-demo-banking` (the README's command) must pick
//! the walk-through: the package has two binaries, so it needs `default-run`
//! (without it cargo refuses: "could not determine which binary to run").

#[test]
fn cargo_run_picks_the_walkthrough() {
    let manifest: toml::Table = toml::from_str(include_str!("../Cargo.toml")).unwrap();
    let package = manifest["package"].as_table().unwrap();
    let bins: Vec<&str> = manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(bins.len() > 1, "{bins:?}");
    let default = package
        .get("default-run")
        .and_then(|v| v.as_str())
        .expect("`default-run` is set");
    assert_eq!(default, "orchestrix-demo-banking");
    assert!(bins.contains(&default));
    assert_eq!(
        env!("CARGO_BIN_EXE_orchestrix-demo-banking")
            .rsplit(['/', '\\'])
            .next()
            .unwrap()
            .trim_end_matches(".exe"),
        default
    );
}
