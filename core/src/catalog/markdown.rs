//! Rendering a [`Catalog`] as Markdown with a Mermaid flow diagram.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use super::{Catalog, FilterInfo};

/// Mermaid node ids: `[A-Za-z0-9_]`, unique per node.
#[derive(Default)]
struct Ids {
    by_key: HashMap<String, String>,
    taken: BTreeSet<String>,
}

impl Ids {
    fn id(&mut self, prefix: &str, key: &str) -> String {
        let full = format!("{prefix}:{key}");
        if let Some(id) = self.by_key.get(&full) {
            return id.clone();
        }
        let base: String = format!("{prefix}_{key}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut id = base.clone();
        let mut n = 2;
        while self.taken.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(id.clone());
        self.by_key.insert(full, id.clone());
        id
    }
}

/// A label safe inside `"..."` in Mermaid.
fn label(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// Nodes (declared once, in order) and edges (each once).
#[derive(Default)]
struct Graph {
    ids: Ids,
    nodes: Vec<String>,
    declared: BTreeSet<String>,
    edges: Vec<(String, String)>,
}

impl Graph {
    /// Declares node `prefix:key` (drawn `{open}"text"{close}`) unless
    /// declared already; returns its id.
    fn node(&mut self, prefix: &str, key: &str, open: &str, text: &str, close: &str) -> String {
        let id = self.ids.id(prefix, key);
        if self.declared.insert(id.clone()) {
            self.nodes
                .push(format!("    {id}{open}\"{}\"{close}", label(text)));
        }
        id
    }

    fn edge(&mut self, from: &str, to: &str) {
        let edge = (from.to_owned(), to.to_owned());
        if !self.edges.contains(&edge) {
            self.edges.push(edge);
        }
    }

    fn event(&mut self, event_type: &str) -> String {
        self.node("e", event_type, "([", event_type, "])")
    }
}

pub(super) fn mermaid(catalog: &Catalog) -> String {
    let mut g = Graph::default();
    let mut commands: HashMap<(String, String), String> = HashMap::new();
    for a in &catalog.aggregates {
        let agg = g.node("a", &a.category, "[[", &a.category, "]]");
        for c in &a.commands {
            let id = g.node("c", &format!("{}_{c}", a.category), "[", c, "]");
            commands.insert((a.category.clone(), c.clone()), id.clone());
            g.edge(&id, &agg);
        }
        for e in &a.events {
            let id = g.event(&e.event_type);
            g.edge(&agg, &id);
        }
    }
    for p in &catalog.projections {
        let id = g.node("p", &p.name, "[(", &p.name, ")]");
        for t in &p.handles {
            let e = g.event(t);
            g.edge(&e, &id);
        }
    }
    for h in &catalog.handlers {
        let id = g.node("h", &h.name, "[/", &h.name, "/]");
        for t in &h.handles {
            let e = g.event(t);
            g.edge(&e, &id);
        }
    }
    for s in &catalog.sagas {
        let id = g.node("s", &s.name, "{{", &format!("saga {}", s.name), "}}");
        for t in &s.handles {
            let e = g.event(t);
            g.edge(&e, &id);
        }
        for e in &s.events {
            let e = g.event(&e.event_type);
            g.edge(&id, &e);
        }
        for c in &s.sends {
            let known = c
                .aggregate
                .as_ref()
                .and_then(|a| commands.get(&(a.clone(), c.command.clone())).cloned());
            // A command no registered aggregate handles gets its own node.
            let target = known.unwrap_or_else(|| {
                g.node(
                    "x",
                    &c.command,
                    "[",
                    &format!("{} (unhandled)", c.command),
                    "]",
                )
            });
            g.edge(&id, &target);
        }
    }
    let mut out = String::from("flowchart LR\n");
    for n in &g.nodes {
        out.push_str(n);
        out.push('\n');
    }
    for (from, to) in &g.edges {
        let _ = writeln!(out, "    {from} --> {to}");
    }
    out
}

fn filter_text(filter: &FilterInfo) -> String {
    let mut parts = Vec::new();
    if !filter.categories.is_empty() {
        parts.push(format!("categories {}", code_list(&filter.categories)));
    }
    if !filter.event_types.is_empty() {
        parts.push(format!("event types {}", code_list(&filter.event_types)));
    }
    if parts.is_empty() {
        "all events".to_owned()
    } else {
        parts.join("; ")
    }
}

fn code_list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "—".to_owned();
    }
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes `|` in a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

pub(super) fn render(catalog: &Catalog) -> String {
    let mut out = String::from("# Event catalog\n\n");
    if !catalog.modules.is_empty() {
        let _ = writeln!(out, "Modules: {}.\n", code_list(&catalog.modules));
    }
    let _ = writeln!(
        out,
        "{} aggregates, {} commands, {} event types, {} projections, {} sagas, {} handlers.\n",
        catalog.aggregates.len(),
        catalog
            .aggregates
            .iter()
            .map(|a| a.commands.len())
            .sum::<usize>(),
        catalog.event_types().len(),
        catalog.projections.len(),
        catalog.sagas.len(),
        catalog.handlers.len(),
    );
    out.push_str("## Flow\n\n```mermaid\n");
    out.push_str(&mermaid(catalog));
    out.push_str("```\n\n");

    out.push_str("## Aggregates\n\n");
    for a in &catalog.aggregates {
        let _ = writeln!(out, "### `{}`\n", a.category);
        let _ = writeln!(
            out,
            "Streams `{}-{{id}}`, source `{}`, Rust type `{}`, state version {}.\n",
            a.category, a.source, a.rust_type, a.state_version
        );
        let _ = writeln!(
            out,
            "Commands (`{}`): {}.\n",
            a.command_type,
            code_list(&a.commands)
        );
        out.push_str("| event type | schema version | handled by |\n|---|---|---|\n");
        for e in &a.events {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                e.event_type,
                e.version,
                cell(&code_list(&handled_by(catalog, &e.event_type)))
            );
        }
        out.push('\n');
    }

    if !catalog.projections.is_empty() {
        out.push_str(
            "## Projections\n\n| projection | kind | filter | handles |\n|---|---|---|---|\n",
        );
        for p in &catalog.projections {
            let kind = serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {kind} | {} | {} |",
                p.name,
                cell(&filter_text(&p.filter)),
                cell(&code_list(&p.handles))
            );
        }
        out.push('\n');
    }

    if !catalog.sagas.is_empty() {
        out.push_str("## Sagas\n\n");
        for s in &catalog.sagas {
            let _ = writeln!(out, "### `{}`\n", s.name);
            let _ = writeln!(
                out,
                "Instances in streams `{}-{{correlation}}`.\n",
                s.category
            );
            let _ = writeln!(out, "- filter: {}", filter_text(&s.filter));
            let _ = writeln!(out, "- reacts to: {}", code_list(&s.handles));
            let sends: Vec<String> = s
                .sends
                .iter()
                .map(|c| match &c.aggregate {
                    Some(a) => format!("{a}.{}", c.command),
                    None => format!("{} (no registered aggregate)", c.command),
                })
                .collect();
            let _ = writeln!(out, "- sends: {}", code_list(&sends));
            let own: Vec<String> = s
                .events
                .iter()
                .map(|e| format!("{} v{}", e.event_type, e.version))
                .collect();
            let _ = writeln!(out, "- records: {}\n", code_list(&own));
        }
    }

    if !catalog.handlers.is_empty() {
        out.push_str("## Handlers\n\n| handler | filter | handles |\n|---|---|---|\n");
        for h in &catalog.handlers {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                h.name,
                cell(&filter_text(&h.filter)),
                cell(&code_list(&h.handles))
            );
        }
        out.push('\n');
    }
    out
}

/// Who handles an event type: projections, sagas and handlers by name.
fn handled_by(catalog: &Catalog, event_type: &str) -> Vec<String> {
    let has = |handles: &[String]| handles.iter().any(|t| t == event_type);
    catalog
        .projections
        .iter()
        .filter(|p| has(&p.handles))
        .map(|p| p.name.clone())
        .chain(
            catalog
                .sagas
                .iter()
                .filter(|s| has(&s.handles))
                .map(|s| format!("saga {}", s.name)),
        )
        .chain(
            catalog
                .handlers
                .iter()
                .filter(|h| has(&h.handles))
                .map(|h| h.name.clone()),
        )
        .collect()
}
