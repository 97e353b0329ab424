//! `orchestrix catalog` from an application's own binary, on the banking
//! and e-commerce demos: the Markdown names every registered type, and its
//! Mermaid block passes a structural check.

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use orchestrix::catalog::Catalog;
use orchestrix::{Application, Store};
use orchestrix_cli::{Cli, Context, Out};
use orchestrix_ops::Operations;

fn bank(store: Store) -> orchestrix::Result<Application> {
    Application::builder(store)
        .module(orchestrix_demo_banking::BankModule::default())
        .build()
}

fn shop(store: Store) -> orchestrix::Result<Application> {
    Application::builder(store)
        .module(orchestrix_demo_ecommerce::ShopModule::default())
        .build()
}

fn context(build: fn(Store) -> orchestrix::Result<Application>) -> Context {
    Context::with(Box::new(move |store| {
        Box::pin(async move { Ok(Operations::application(build(store)?)) })
    }))
}

async fn run(context: &Context, args: &[&str]) -> (u8, String) {
    let mut argv = vec!["orchestrix"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut buf = Vec::new();
    let code = {
        let mut out = Out {
            w: &mut buf,
            json: cli.global.json,
            tty: false,
        };
        match orchestrix_cli::run(cli, context, &mut out).await {
            Ok(()) => 0,
            Err(f) => {
                eprintln!("error: {:#}", f.error);
                f.code
            }
        }
    };
    (code, String::from_utf8(buf).unwrap())
}

/// The one ```mermaid block of a Markdown text.
fn mermaid_block(markdown: &str) -> &str {
    let start = markdown.find("```mermaid\n").expect("a mermaid block") + "```mermaid\n".len();
    let len = markdown[start..].find("```").expect("the block is closed");
    assert_eq!(
        markdown.matches("```mermaid").count(),
        1,
        "exactly one mermaid block"
    );
    &markdown[start..start + len]
}

/// A node declaration `id<open>"label"<close>` with one of the shapes the
/// catalog draws: `[..]` `[[..]]` `([..])` `[(..)]` `[/../]` `{{..}}`.
fn parse_node(line: &str) -> Option<(String, String)> {
    let id_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let (id, rest) = line.split_at(id_end);
    if id.is_empty() || !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    for (open, close) in [
        ("[[", "]]"),
        ("([", "])"),
        ("[(", ")]"),
        ("[/", "/]"),
        ("{{", "}}"),
        ("[", "]"),
    ] {
        if let Some(inner) = rest.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            let label = inner.strip_prefix('"')?.strip_suffix('"')?;
            if label.contains('"') {
                return None;
            }
            return Some((id.to_owned(), label.to_owned()));
        }
    }
    None
}

/// Checks a flowchart structurally: the `flowchart` header, then node
/// declarations (each id once), then `a --> b` edges between declared nodes;
/// every node on at least one edge. Returns the labels by id and the edges.
fn check_flowchart(text: &str) -> (BTreeMap<String, String>, BTreeSet<(String, String)>) {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines.next().expect("a header");
    let mut words = header.split_whitespace();
    assert_eq!(words.next(), Some("flowchart"), "header: {header}");
    assert!(
        matches!(words.next(), Some("LR" | "TD" | "TB" | "RL" | "BT")),
        "direction: {header}"
    );
    let mut nodes = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for line in lines {
        if let Some((from, to)) = line.split_once(" --> ") {
            let (from, to) = (from.trim(), to.trim());
            assert!(
                nodes.contains_key(from),
                "edge from undeclared `{from}`: {line}"
            );
            assert!(nodes.contains_key(to), "edge to undeclared `{to}`: {line}");
            assert!(
                edges.insert((from.to_owned(), to.to_owned())),
                "duplicate edge {line}"
            );
        } else {
            assert!(edges.is_empty(), "node declared after the edges: {line}");
            let (id, label) = parse_node(line).unwrap_or_else(|| panic!("not a node: {line}"));
            assert!(
                !["end", "graph", "subgraph"].contains(&id.as_str()),
                "reserved id {id}"
            );
            assert!(
                nodes.insert(id.clone(), label).is_none(),
                "node {id} declared twice"
            );
        }
    }
    for id in nodes.keys() {
        assert!(
            edges.iter().any(|(a, b)| a == id || b == id),
            "dangling node `{id}`"
        );
    }
    (nodes, edges)
}

/// Whether `to` is reachable from `from`.
fn reaches(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from.to_owned()]);
    let mut todo = vec![from.to_owned()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        for (a, b) in edges {
            if *a == n && seen.insert(b.clone()) {
                todo.push(b.clone());
            }
        }
    }
    false
}

fn id_of<'a>(nodes: &'a BTreeMap<String, String>, label: &str) -> &'a str {
    nodes
        .iter()
        .find(|(_, l)| *l == label)
        .map(|(id, _)| id.as_str())
        .unwrap_or_else(|| panic!("no node labelled {label}"))
}

/// Every registered type is named in the Markdown and drawn in the diagram.
fn check_names_everything(catalog: &Catalog, markdown: &str) {
    let (nodes, edges) = check_flowchart(mermaid_block(markdown));
    let labels: BTreeSet<&str> = nodes.values().map(String::as_str).collect();
    for module in &catalog.modules {
        assert!(markdown.contains(&format!("`{module}`")), "module {module}");
    }
    for a in &catalog.aggregates {
        assert!(markdown.contains(&format!("### `{}`", a.category)));
        assert!(
            labels.contains(a.category.as_str()),
            "aggregate node {}",
            a.category
        );
        for c in &a.commands {
            assert!(markdown.contains(&format!("`{c}`")), "command {c}");
        }
        for e in &a.events {
            assert!(
                markdown.contains(&format!("| `{}` | {} |", e.event_type, e.version)),
                "event {} v{}",
                e.event_type,
                e.version
            );
            assert!(
                labels.contains(e.event_type.as_str()),
                "event node {}",
                e.event_type
            );
        }
    }
    for p in &catalog.projections {
        assert!(
            markdown.contains(&format!("| `{}` |", p.name)),
            "projection {}",
            p.name
        );
        assert!(labels.contains(p.name.as_str()));
        assert!(
            !p.handles.is_empty(),
            "projection {} handles nothing",
            p.name
        );
    }
    for s in &catalog.sagas {
        assert!(
            markdown.contains(&format!("### `{}`", s.name)),
            "saga {}",
            s.name
        );
        let saga = id_of(&nodes, &format!("saga {}", s.name));
        for c in &s.sends {
            assert!(
                c.aggregate.is_some(),
                "saga command {} unresolved",
                c.command
            );
        }
        for e in &s.events {
            assert!(
                markdown.contains(&e.event_type),
                "saga event {}",
                e.event_type
            );
        }
        // The loop the diagram exists to show: saga → command → aggregate.
        for c in &s.sends {
            let agg = id_of(&nodes, c.aggregate.as_deref().unwrap());
            assert!(reaches(&edges, saga, agg), "saga {} → {agg}", s.name);
        }
    }
    for t in catalog.event_types() {
        assert!(markdown.contains(t), "event type {t}");
    }
}

#[tokio::test]
async fn banking_catalog_names_every_type_and_its_flowchart_parses() {
    let (code, markdown) = run(&context(bank), &["catalog"]).await;
    assert_eq!(code, 0);
    let catalog = Catalog::of(&bank(Store::memory()).unwrap());
    assert_eq!(catalog.modules, ["bank"]);
    let categories: Vec<&str> = catalog
        .aggregates
        .iter()
        .map(|a| a.category.as_str())
        .collect();
    assert_eq!(categories, ["account", "transfer"]);
    assert_eq!(catalog.aggregates[0].commands[0], "Open");
    assert_eq!(catalog.projections[0].name, "bank-balances");
    assert_eq!(catalog.sagas[0].name, "transfer");
    check_names_everything(&catalog, &markdown);
    // The transfer saga reacts to Requested and drives accounts.
    let (nodes, edges) = check_flowchart(mermaid_block(&markdown));
    let requested = id_of(&nodes, "com.orchestrix.bank.transfer.Requested");
    let saga = id_of(&nodes, "saga transfer");
    let debit = nodes
        .iter()
        .find(|(id, l)| *l == "Debit" && id.contains("account"))
        .map(|(id, _)| id.clone())
        .unwrap();
    assert!(edges.contains(&(requested.to_owned(), saga.to_owned())));
    assert!(edges.contains(&(saga.to_owned(), debit)));

    let (code, json) = run(&context(bank), &["--json", "catalog"]).await;
    assert_eq!(code, 0);
    let back: Catalog = serde_json::from_str(&json).unwrap();
    assert_eq!(back, catalog);

    let (code, mermaid) = run(&context(bank), &["catalog", "--format", "mermaid"]).await;
    assert_eq!(code, 0);
    check_flowchart(&mermaid);
}

#[tokio::test]
async fn ecommerce_catalog_names_every_type_and_its_flowchart_parses() {
    let (code, markdown) = run(&context(shop), &["catalog"]).await;
    assert_eq!(code, 0);
    let catalog = Catalog::of(&shop(Store::memory()).unwrap());
    let categories: Vec<&str> = catalog
        .aggregates
        .iter()
        .map(|a| a.category.as_str())
        .collect();
    assert_eq!(categories, ["order", "payment", "inventory"]);
    assert_eq!(catalog.sagas.len(), 1);
    check_names_everything(&catalog, &markdown);
}

#[tokio::test]
async fn the_generic_binary_has_no_catalog() {
    let (code, _) = run(&Context::generic(), &["catalog"]).await;
    assert_eq!(code, orchestrix_cli::EXIT_USAGE);
}

#[test]
fn the_checker_rejects_broken_flowcharts() {
    let bad = [
        "graph LR\n    a[\"x\"]\n    b[\"y\"]\n    a --> b\n",
        "flowchart LR\n    a[\"x\"]\n    a --> b\n",
        "flowchart LR\n    a[\"x\"]\n    b[\"y\"]\n    c[\"z\"]\n    a --> b\n",
        "flowchart LR\n    a[\"x\"]\n    a[\"y\"]\n    a --> a\n",
        "flowchart LR\n    a[x]\n    b[\"y\"]\n    a --> b\n",
    ];
    for text in bad {
        assert!(
            std::panic::catch_unwind(|| check_flowchart(text)).is_err(),
            "accepted: {text}"
        );
    }
    check_flowchart("flowchart LR\n    a[\"x\"]\n    b{{\"y\"}}\n    a --> b\n");
}
