//! No two modules of core depend on each other, directly or through others
//! (issue #13 §1): the graph of core's top-level modules, built from their
//! `crate::` paths, is acyclic.
//!
//! The graph: every `crate::x`
//! and `crate::{..}` path outside a file's `#[cfg(test)]` tail (doc links
//! included: a link is a reader's dependency too) names a module, either
//! directly or through a name that `lib.rs` re-exports from it. A file in a
//! module's folder (`verifier/payment.rs`) belongs to that module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The words of `text` that start it or follow `{`, `,` or white space (the
/// last segment of a nested path such as `a::B` is not one: it names an item
/// of `a`).
fn path_heads(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut prev = None;
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word(c), start) {
            (true, None) => {
                if matches!(prev, None | Some('{') | Some(','))
                    || prev.is_some_and(char::is_whitespace)
                {
                    start = Some(i);
                } else {
                    start = Some(usize::MAX);
                }
            }
            (false, Some(s)) => {
                if s != usize::MAX {
                    out.push(&text[s..i]);
                }
                start = None;
            }
            _ => {}
        }
        prev = Some(c);
    }
    if let Some(s) = start.filter(|s| *s != usize::MAX) {
        out.push(&text[s..]);
    }
    out
}

/// Names `lib.rs` re-exports (`pub use m::{A, B};`, `pub use m::A;`), with
/// the module they come from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim_start().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for name in items.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.chars().all(is_word) {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// The modules the body of one file reaches through `crate::` paths.
fn references(
    body: &str,
    modules: &BTreeSet<String>,
    reexported: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in body.match_indices("crate::") {
        let rest = &body[at + "crate::".len()..];
        let names: Vec<&str> = if rest.starts_with('{') {
            // Up to the last `}` before the statement's `;`.
            let stmt = &rest[..rest.find(';').unwrap_or(rest.len())];
            match stmt.rfind('}') {
                Some(end) => path_heads(&stmt[..=end]),
                None => Vec::new(),
            }
        } else {
            let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
            vec![&rest[..end]]
        };
        for name in names {
            if modules.contains(name) {
                out.insert(name.to_owned());
            } else if let Some(m) = reexported.get(name) {
                out.insert(m.clone());
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module graph of the crate whose sources are in `root`.
fn module_graph(root: &Path) -> Graph {
    let lib = fs::read_to_string(root.join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let modules: BTreeSet<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").unwrap_or(&name).to_owned()
        })
        .filter(|m| m != "lib")
        .collect();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let top = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        if top == "lib" {
            continue;
        }
        let src = fs::read_to_string(&file).unwrap();
        let body = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        let refs = references(body, &modules, &reexported);
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(refs.into_iter().filter(|m| *m != top));
    }
    graph
}

/// One cycle of `graph`, as the path `a -> b -> .. -> a`, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, deps)| format!("{m} -> {deps:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn core_modules_form_no_import_cycle() {
    let graph = module_graph(&src_dir());
    // The parser sees the edges it must see (otherwise an empty graph would
    // pass): the verifier uses the store and builds rejections; rejections
    // name store errors; the store names steps.
    for (from, to) in [
        ("verifier", "store"),
        ("verifier", "error"),
        ("error", "store"),
        ("store", "steps"),
        ("messages", "crypto"),
    ] {
        assert!(
            graph.get(from).is_some_and(|d| d.contains(to)),
            "the module graph lacks {from} -> {to}; the parser is broken:\n{}",
            render(&graph)
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "core's modules import each other: {}\nmodule graph:\n{}",
            cycle.join(" -> "),
            render(&graph)
        );
    }
}

#[test]
fn the_cycle_finder_names_a_cycle() {
    let mut graph = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "b"), ("d", "a")] {
        graph.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(find_cycle(&graph).unwrap(), ["b", "c", "b"]);
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn the_parser_reads_braced_paths_and_reexports() {
    let modules: BTreeSet<String> = ["store", "messages", "verifier"].map(String::from).into();
    let reexported = reexports("pub use verifier::{Policy, Verifier};\npub use store::Store;\n");
    assert_eq!(reexported["Policy"], "verifier");
    assert_eq!(reexported["Store"], "store");
    let body = "use crate::{\n    messages::{Challenge, CredentialId},\n    Policy,\n};\n\
                fn f() { crate::Store::x(); }";
    assert_eq!(
        references(body, &modules, &reexported),
        ["messages", "store", "verifier"].map(String::from).into()
    );
}
