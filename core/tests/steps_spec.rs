//! The step tables of docs/PROTOCOL.md and the `Step` enum say the same
//! thing: every step of §6.3–§6.6, §12.5, §13.4, §13.5 and §13.8 is a variant with
//! that code and name, every variant is in a table, and each table numbers
//! its steps 1, 2, .. in order. Spec and code cannot drift apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay_core::Step;
use std::collections::BTreeSet;

/// The sections holding step tables, and the letter of their codes.
const TABLES: &[(&str, char)] = &[
    ("### 6.3 ", 'R'),
    ("### 6.4 ", 'P'),
    ("### 6.5 ", 'D'),
    ("### 6.6 ", 'E'),
    ("### 12.5 ", 'A'),
    ("### 13.4 ", 'I'),
    ("### 13.5 ", 'J'),
    ("### 13.8 ", 'K'),
];

fn protocol() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap()
}

/// The `(code, name)` of each step row (`| \`P12 transaction-hash\` | ...`)
/// of the section whose heading starts with `heading`, in order.
fn table(doc: &str, heading: &str) -> Vec<(String, String)> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(heading));
    assert!(
        lines.next().is_some(),
        "PROTOCOL.md has no section {heading:?}"
    );
    lines
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cell = l.strip_prefix("| `")?.split('`').next()?;
            let (code, name) = cell.split_once(' ')?;
            let letter = code.chars().next()?;
            (letter.is_ascii_uppercase() && code[1..].parse::<u32>().is_ok())
                .then(|| (code.to_owned(), name.to_owned()))
        })
        .collect()
}

#[test]
fn the_step_tables_of_the_spec_are_the_step_enum() {
    let doc = protocol();
    let mut spec = BTreeSet::new();
    for &(heading, letter) in TABLES {
        let rows = table(&doc, heading);
        assert!(
            rows.len() >= 4,
            "{heading}: only {} steps found",
            rows.len()
        );
        for (i, (code, name)) in rows.iter().enumerate() {
            assert_eq!(
                *code,
                format!("{letter}{}", i + 1),
                "{heading}: row {} is {code} {name}",
                i + 1
            );
            assert!(
                spec.insert((code.clone(), name.clone())),
                "{code} twice in the spec"
            );
        }
    }
    let code: BTreeSet<_> = Step::ALL
        .iter()
        .map(|s| (s.code().to_owned(), s.name().to_owned()))
        .collect();
    assert_eq!(code.len(), Step::ALL.len(), "a code twice in Step::ALL");
    let only_spec: Vec<_> = spec.difference(&code).collect();
    let only_code: Vec<_> = code.difference(&spec).collect();
    assert!(
        only_spec.is_empty() && only_code.is_empty(),
        "in PROTOCOL.md but not in Step: {only_spec:?}; in Step but not in PROTOCOL.md: {only_code:?}"
    );
}

/// The parser above finds a renamed or missing step (so the test above can
/// fail): a spec with one name changed and one row dropped differs.
#[test]
fn a_renamed_or_dropped_step_in_the_spec_is_found() {
    let doc = protocol()
        .replace("| `P12 transaction-hash` |", "| `P12 tx-hash` |")
        .replace("| `D8 counter` |", "| D8 counter |");
    let p = table(&doc, "### 6.4 ");
    assert_eq!(p[11], ("P12".to_owned(), "tx-hash".to_owned()));
    let d = table(&doc, "### 6.5 ");
    assert_eq!(d.len(), 8);
    assert_eq!(d[7].0, "D9");
}
