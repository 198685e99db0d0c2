//! SecurityBaselines from files (or the embedded default), validated as admission would:
//! unknown fields (kubectl's strict field validation), the CRD's CEL rules, then the types.

use crate::domain::selection::invalid_selector;
use serde_json::Value;

use super::documents::{Document, InputError, Origin, parse_named, read_file_text};
use super::inventory::group_of;
use crate::api::{GROUP, SECURITY_BASELINE_SCHEMA, SecurityBaseline, validate_baseline_cel};

/// The default baseline when `--baseline` is not given.
pub const EMBEDDED_NAME: &str = "config/samples/restricted.yaml";
const EMBEDDED: &str = include_str!("../../../config/samples/restricted.yaml");

/// A baseline and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedBaseline {
    pub baseline: SecurityBaseline,
    /// "FILE: document N", "embedded default config/samples/restricted.yaml" or "cluster".
    pub source: String,
}

/// Why the baselines cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{file}: no SecurityBaseline in the file")]
    Empty { file: String },
    /// A document that is not a valid SecurityBaseline, and where it is.
    #[error("{origin}: {problem}")]
    Invalid {
        origin: Origin,
        problem: BaselineProblem,
    },
    /// Two baselines of one name (the second would shadow the first).
    #[error("{at}: SecurityBaseline {name} is also defined in {first}")]
    Duplicate {
        at: String,
        name: String,
        first: String,
    },
}

/// What is wrong with one SecurityBaseline document (as admission would say it).
#[derive(Debug, thiserror::Error)]
pub enum BaselineProblem {
    #[error("expected a SecurityBaseline ({GROUP}/v1alpha1), found {found}")]
    NotABaseline {
        /// `apiVersion kind`, or "a document without kind".
        found: String,
    },
    #[error("SecurityBaseline has no metadata.name")]
    NoName,
    /// A field the CRD does not declare (kubectl's strict field validation rejects it).
    #[error("SecurityBaseline {name}: unknown field {path}")]
    UnknownField { name: String, path: String },
    /// A CEL rule of the CRD.
    #[error("SecurityBaseline {name}: {source}")]
    Cel {
        name: String,
        #[source]
        source: kube::core::cel::ValidationError,
    },
    /// The document does not deserialize (a wrong type, an unknown enum value).
    #[error("SecurityBaseline {name}: invalid: {source}")]
    Types {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A selector the CRD admits but Kubernetes rejects.
    #[error("SecurityBaseline {name}: {why}")]
    Selector { name: String, why: String },
}

/// The embedded default baseline.
pub fn embedded() -> Result<Vec<LoadedBaseline>, Vec<BaselineError>> {
    let documents = parse_named(EMBEDDED_NAME, EMBEDDED).map_err(inputs)?;
    let mut loaded = from_documents(&documents)?;
    for baseline in &mut loaded {
        baseline.source = format!("embedded default {EMBEDDED_NAME}");
    }
    Ok(loaded)
}

fn inputs(errors: Vec<InputError>) -> Vec<BaselineError> {
    errors.into_iter().map(BaselineError::Input).collect()
}

/// Every baseline of every file, in order; one error per problem.
pub fn from_files(files: &[String]) -> Result<Vec<LoadedBaseline>, Vec<BaselineError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let documents = match read_file_text(std::path::Path::new(file))
            .map_err(|e| vec![e])
            .and_then(|text| parse_named(file, &text))
            .map_err(inputs)
        {
            Ok(documents) => documents,
            Err(mut errs) => {
                errors.append(&mut errs);
                continue;
            }
        };
        if documents.is_empty() {
            errors.push(BaselineError::Empty { file: file.clone() });
        }
        match from_documents(&documents) {
            Ok(mut baselines) => loaded.append(&mut baselines),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        check_unique(&loaded)?;
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// Rejects two baselines of one name (the second would shadow the first).
pub fn check_unique(loaded: &[LoadedBaseline]) -> Result<(), Vec<BaselineError>> {
    let mut errors = Vec::new();
    for (i, b) in loaded.iter().enumerate() {
        if let Some(first) = loaded[..i]
            .iter()
            .find(|o| o.baseline.metadata.name == b.baseline.metadata.name)
        {
            errors.push(BaselineError::Duplicate {
                at: b.source.clone(),
                name: b.baseline.metadata.name.clone().unwrap_or_default(),
                first: first.source.clone(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn from_documents(documents: &[Document]) -> Result<Vec<LoadedBaseline>, Vec<BaselineError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for document in documents {
        match parse_baseline(&document.value) {
            Ok(baseline) => loaded.push(LoadedBaseline {
                baseline,
                source: document.origin.to_string(),
            }),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|problem| BaselineError::Invalid {
                    origin: document.origin.clone(),
                    problem,
                }))
            }
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// Validates and types one SecurityBaseline document.
pub fn parse_baseline(value: &Value) -> Result<SecurityBaseline, Vec<BaselineProblem>> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if kind != "SecurityBaseline" || group_of(api_version) != GROUP {
        return Err(vec![BaselineProblem::NotABaseline {
            found: if kind.is_empty() {
                "a document without kind".to_owned()
            } else {
                format!("{api_version} {kind}")
            },
        }]);
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        return Err(vec![BaselineProblem::NoName]);
    }
    let name = name.to_owned();
    let mut problems: Vec<BaselineProblem> = unknown_fields(value)
        .into_iter()
        .map(|path| BaselineProblem::UnknownField {
            name: name.clone(),
            path,
        })
        .collect();
    if let Err(errors) = validate_baseline_cel(value) {
        problems.extend(
            errors
                .into_vec()
                .into_iter()
                .map(|source| BaselineProblem::Cel {
                    name: name.clone(),
                    source,
                }),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let baseline = serde_json::from_value::<SecurityBaseline>(value.clone()).map_err(|source| {
        vec![BaselineProblem::Types {
            name: name.clone(),
            source,
        }]
    })?;
    // The CRD admits malformed label keys and values; Kubernetes rejects such a selector,
    // and the controller holds such a baseline instead of acting on it.
    match invalid_selector(&baseline.spec) {
        Some(why) => Err(vec![BaselineProblem::Selector { name, why }]),
        None => Ok(baseline),
    }
}

/// Fields the CRD's schema does not declare (below metadata, which is not in the schema),
/// as `.spec.namespaceSelecter`. kubectl rejects them (strict field validation); silently
/// dropping a misspelt selector would select every namespace.
fn unknown_fields(value: &Value) -> Vec<String> {
    let schema = &*SECURITY_BASELINE_SCHEMA;
    let mut found = Vec::new();
    if let Some(object) = value.as_object() {
        for (key, child) in object {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema.pointer(&format!("/properties/{key}")) {
                Some(child_schema) => walk(child_schema, child, &format!(".{key}"), &mut found),
                None => found.push(format!(".{key}")),
            }
        }
    }
    found
}

fn walk(schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let preserves = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) if !preserves => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_schema = properties.and_then(|p| p.get(key)).or(additional);
                match child_schema {
                    Some(child_schema) => {
                        walk(child_schema, child, &format!("{path}.{key}"), found);
                    }
                    None if properties.is_some() => found.push(format!("{path}.{key}")),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_embedded_default_is_the_restricted_sample() {
        let loaded = embedded().expect("the sample is valid");
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].baseline.metadata.name.as_deref(),
            Some("restricted")
        );
    }

    #[test]
    fn cel_rules_unknown_fields_and_types_are_checked() {
        let errors = parse_baseline(&json!({
            "apiVersion": "kube-baseline.dev/v1alpha1",
            "kind": "SecurityBaseline",
            "metadata": {"name": "bad"},
            "spec": {
                "namespaceSelecter": {},
                "rbac": {"roles": [{"name": "r", "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}]}
            }
        }))
        .expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(
            errors[0].to_string(),
            "SecurityBaseline bad: unknown field .spec.namespaceSelecter"
        );
        assert!(
            matches!(&errors[1], BaselineProblem::Cel { name, .. } if name == "bad")
                && errors[1].to_string().contains("'*' is not allowed"),
            "the CEL rule's message: {errors:#?}"
        );
        let wrong_type = parse_baseline(&json!({
            "apiVersion": "kube-baseline.dev/v1alpha1",
            "kind": "SecurityBaseline",
            "metadata": {"name": "bad"},
            "spec": {"mode": "Sometimes"}
        }))
        .expect_err("invalid");
        assert!(
            wrong_type[0].to_string().contains("Sometimes"),
            "{wrong_type:?}"
        );
    }
}
