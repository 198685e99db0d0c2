//! Label selectors, differentially: kube-baseline's `selector_matches` against
//! k8s.io/apimachinery itself (e2e/selectorref: `metav1.LabelSelectorAsSelector`, then the
//! selector's `Matches`), over generated selectors and namespace labels whose keys and
//! values collide often, with a fixed seed. The Go program runs once over every case. No
//! cluster is needed.
//!
//! - Where apimachinery accepts a selector, we read it, find it valid and match exactly the
//!   same labels.
//! - Where apimachinery rejects it, so do we (docs/architecture.md, "Label selectors"):
//!   either `validate_selector` says why and `selector_matches` is false for every
//!   namespace, or, for an operator we do not know, the selector cannot be read at all (the
//!   baseline is unreadable: README, "An object it cannot read").
//!
//! Known differences would be listed as documented exceptions; there are none.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use kube_baseline::api::NamespaceSelector;
use kube_baseline::domain::selection::{selector_matches, validate_selector};
use kube_baseline_e2e::selectorref_binary;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

const CASES: usize = 4_000;
const SEED: [u8; 32] = *b"kube-baseline selector reference";

/// Valid label keys from a small alphabet, some prefixed: selectors and labels share keys
/// often.
fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-c]{1,2}", 1 => "(x\\.io|k8s-1)/[a-c]"]
}

fn label_value() -> impl Strategy<Value = String> {
    "[x-z]{0,2}"
}

/// A namespace's labels: valid ones only, as the API server stores no other.
fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label_key(), label_value(), 0..5)
}

/// Mostly valid keys, sometimes one that breaks a rule of label keys (each alternative
/// breaks one: characters, ends, prefix, several slashes, length of name and prefix).
fn selector_key() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => label_key(),
        1 => prop::sample::select(vec![
            "", "-a", "a-", "_a", "a_", "a b", "a/", "/a", "a/b/c", "X.io/a", "x..io/a",
            "-x.io/a", "x.io/-a", "x.io/", "a\n", "\u{e9}",
        ])
        .prop_map(str::to_string),
        1 => "[a-c]{62,64}",
        1 => "[a-c]{1,2}\\.[a-c]{250,252}/a",
    ]
}

fn selector_value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => label_value(),
        1 => prop::sample::select(vec!["-x", "x-", "x y", "x/y", "_x", ".", "x\n", "\u{e9}"])
            .prop_map(str::to_string),
        1 => "[x-z]{62,64}",
    ]
}

/// The four operators, and sometimes one Kubernetes does not know.
fn operator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        20 => prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
        1 => prop::sample::select(vec!["in", "Equals", "Gt", "", "exists"]),
    ]
}

/// A matchExpressions entry as JSON: mostly with the values its operator takes.
fn expression() -> impl Strategy<Value = Value> {
    (
        selector_key(),
        operator(),
        prop::collection::vec(selector_value(), 0..3),
        prop::bool::weighted(0.85),
        any::<bool>(),
    )
        .prop_map(|(key, operator, mut values, values_fit, omit_empty)| {
            if values_fit {
                match operator {
                    "Exists" | "DoesNotExist" => values.clear(),
                    _ if values.is_empty() => values.push("x".to_string()),
                    _ => {}
                }
            }
            let mut expression = json!({"key": key, "operator": operator});
            // An empty list written out or left out: the API server stores either.
            if !(values.is_empty() && omit_empty) {
                expression["values"] = json!(values);
            }
            expression
        })
}

fn selector() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(selector_key(), selector_value(), 0..3),
        prop::collection::vec(expression(), 0..4),
    )
        .prop_map(|(match_labels, match_expressions)| {
            let mut selector = json!({});
            if !match_labels.is_empty() {
                selector["matchLabels"] = json!(match_labels);
            }
            if !match_expressions.is_empty() {
                selector["matchExpressions"] = json!(match_expressions);
            }
            selector
        })
}

/// What apimachinery says of one case.
#[derive(Debug, serde::Deserialize)]
struct Reference {
    #[serde(default)]
    error: String,
    matches: bool,
}

/// What we say of one case.
#[derive(Debug)]
enum Ours {
    /// serde cannot read it: the baseline would be unreadable.
    Unreadable(String),
    /// Read, but `validate_selector` rejects it; `selector_matches` said this.
    Invalid(String, bool),
    Matches(bool),
}

impl std::fmt::Display for Ours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ours::Unreadable(why) => write!(f, "unreadable ({why})"),
            Ours::Invalid(why, matches) => write!(f, "invalid ({why}), matches: {matches}"),
            Ours::Matches(matches) => write!(f, "matches: {matches}"),
        }
    }
}

fn ours(selector: &Value, labels: &BTreeMap<String, String>) -> Ours {
    match serde_json::from_value::<NamespaceSelector>(selector.clone()) {
        Err(err) => Ours::Unreadable(err.to_string()),
        Ok(parsed) => match validate_selector(&parsed) {
            Err(err) => Ours::Invalid(err.to_string(), selector_matches(&parsed, labels)),
            Ok(()) => Ours::Matches(selector_matches(&parsed, labels)),
        },
    }
}

fn has_unknown_operator(selector: &Value) -> bool {
    selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| {
            !["In", "NotIn", "Exists", "DoesNotExist"]
                .contains(&e["operator"].as_str().unwrap_or_default())
        })
}

/// Runs e2e/selectorref once over every case.
fn reference(cases: &[(Value, BTreeMap<String, String>)]) -> Vec<Reference> {
    let mut input = String::new();
    for (selector, labels) in cases {
        input.push_str(&json!({"selector": selector, "labels": labels}).to_string());
        input.push('\n');
    }
    let mut child = Command::new(selectorref_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("selectorref runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from another thread: the answers fill the stdout pipe meanwhile.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("selectorref finishes");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(
        output.status.success(),
        "selectorref failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Reference> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON answer per line"))
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

#[test]
fn selectors_match_what_apimachinery_matches() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let case = (selector(), labels());
    let cases: Vec<_> = (0..CASES)
        .map(|_| case.new_tree(&mut runner).expect("a case").current())
        .collect();
    let answers = reference(&cases);

    let mut differences = Vec::new();
    let (mut matched, mut unmatched, mut invalid, mut unreadable) = (0, 0, 0, 0);
    for ((selector, labels), reference) in cases.iter().zip(&answers) {
        let ours = ours(selector, labels);
        let agrees = match (&ours, reference.error.is_empty()) {
            (Ours::Matches(m), true) => *m == reference.matches,
            // Rejected by both: an invalid selector matches nothing; an unknown operator
            // makes the selector unreadable.
            (Ours::Invalid(_, m), false) => !m,
            (Ours::Unreadable(_), false) => has_unknown_operator(selector),
            _ => false,
        };
        match &ours {
            Ours::Matches(true) => matched += 1,
            Ours::Matches(false) => unmatched += 1,
            Ours::Invalid(..) => invalid += 1,
            Ours::Unreadable(_) => unreadable += 1,
        }
        if !agrees {
            differences.push(format!(
                "selector {selector}, labels {labels:?}: apimachinery {reference:?}, ours: {ours}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {CASES} cases differ from apimachinery; the first:\n{}",
        differences.len(),
        differences[..differences.len().min(20)].join("\n")
    );
    // The generator keeps every kind of case well represented.
    for (what, count) in [
        ("valid, matching", matched),
        ("valid, not matching", unmatched),
        ("invalid", invalid),
        ("unknown operator", unreadable),
    ] {
        assert!(
            count >= CASES / 50,
            "only {count} {what} cases of {CASES}: matched {matched}, unmatched {unmatched}, \
             invalid {invalid}, unreadable {unreadable}"
        );
    }
}
