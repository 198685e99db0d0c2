//! Reading manifests: files, directories (recursively), stdin; multi-document YAML, JSON, and
//! `kind: List` documents as `kubectl get -o yaml` prints them, flattened. Every document
//! keeps where it came from, so errors name the file and document number.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where a document came from: `FILE: document N` (or `..., item M` inside a List).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file as the user named it (or as found under a directory); `stdin` for `-`.
    pub file: String,
    /// 1-based number of the document in the file (empty documents are not counted).
    pub document: usize,
    /// First line of the document in the file (1-based).
    pub line: usize,
    /// 1-based index in a List document's items.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// Why an input could not be read: one variant per failure, each naming the file (and the
/// document, for a malformed one).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("stdin (-) is given more than once")]
    StdinTwice,
    #[error("cannot read stdin: {0}")]
    ReadStdin(#[source] std::io::Error),
    /// A file given (or found under a directory) could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory (or one below it) could not be listed.
    #[error("{}: cannot list: {source}", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: the directory holds no *.yaml, *.yml or *.json files")]
    EmptyDir { dir: String },
    #[error("{origin}: invalid JSON: {source}")]
    Json {
        origin: Origin,
        #[source]
        source: serde_json::Error,
    },
    /// `message` is saphyr's, with the file's line numbers rather than the document's.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml { origin: Origin, message: String },
    #[error("{origin}: {kind}: items is not a list")]
    ListItems { origin: Origin, kind: String },
}

/// One parsed document (a List already flattened into its items).
#[derive(Debug, Clone)]
pub struct Document {
    pub origin: Origin,
    pub value: Value,
}

/// The name stdin goes by in messages.
pub const STDIN: &str = "stdin";

/// Extensions read from directories.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Every document of every input, in order: files as given, directories walked recursively
/// in sorted order, `-` for stdin. Errors (unreadable files, malformed documents) are
/// collected, one message each, so the user sees all of them at once.
pub fn read_inputs(inputs: &[String]) -> Result<Vec<Document>, Vec<InputError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    let mut stdin_read = false;
    for input in inputs {
        if input == "-" {
            if stdin_read {
                errors.push(InputError::StdinTwice);
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse_text(STDIN, &text, Format::Sniff, &mut documents, &mut errors),
                Err(err) => errors.push(InputError::ReadStdin(err)),
            }
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files = Vec::new();
            if let Err(err) = walk(path, &mut files) {
                errors.push(err);
                continue;
            }
            if files.is_empty() {
                errors.push(InputError::EmptyDir { dir: input.clone() });
            }
            for file in files {
                read_file(&file, &mut documents, &mut errors);
            }
        } else {
            read_file(path, &mut documents, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

/// Every document of one text (a baseline file or the embedded default).
pub fn parse_named(name: &str, text: &str) -> Result<Vec<Document>, Vec<InputError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    let format = if name.ends_with(".json") {
        Format::Json
    } else {
        Format::Sniff
    };
    parse_text(name, text, format, &mut documents, &mut errors);
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

/// Reads a file given on the command line (not a directory).
pub fn read_file_text(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|source| InputError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

fn read_file(path: &Path, documents: &mut Vec<Document>, errors: &mut Vec<InputError>) {
    let name = path.display().to_string();
    match read_file_text(path) {
        Ok(text) => {
            let format = if path.extension().is_some_and(|e| e == "json") {
                Format::Json
            } else {
                Format::Sniff
            };
            parse_text(&name, &text, format, documents, errors);
        }
        Err(err) => errors.push(err),
    }
}

/// Files under `dir` with a manifest extension, recursively, sorted by path.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let entries = std::fs::read_dir(dir).map_err(|source| InputError::ListDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One JSON value.
    Json,
    /// JSON when it starts with `{` or `[`, else multi-document YAML.
    Sniff,
}

fn parse_text(
    file: &str,
    text: &str,
    format: Format,
    documents: &mut Vec<Document>,
    errors: &mut Vec<InputError>,
) {
    let trimmed = text.trim_start_matches('\u{feff}');
    let json = format == Format::Json || trimmed.trim_start().starts_with(['{', '[']);
    let chunks: Vec<(usize, String)> = if json {
        vec![(1, trimmed.to_owned())]
    } else {
        split_yaml(trimmed)
    };
    let mut number = 0;
    for (line, chunk) in chunks {
        if is_blank(&chunk) {
            continue;
        }
        number += 1;
        let origin = Origin {
            file: file.to_owned(),
            document: number,
            line,
            item: None,
        };
        let parsed = if json {
            serde_json::from_str::<Value>(&chunk).map_err(|source| InputError::Json {
                origin: origin.clone(),
                source,
            })
        } else {
            serde_saphyr::from_str::<Value>(&chunk).map_err(|err| InputError::Yaml {
                origin: origin.clone(),
                message: yaml_error(&err, line),
            })
        };
        match parsed {
            Ok(Value::Null) => number -= 1,
            Ok(value) => flatten(origin, value, documents, errors),
            Err(error) => errors.push(error),
        }
    }
}

/// A YAML error on one line, with the line numbers of the file rather than the document.
fn yaml_error(err: &serde_saphyr::Error, first_line: usize) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let message = strip_location(first.strip_prefix("error: ").unwrap_or(first));
    match err.location() {
        Some(location) => {
            let line = usize::try_from(location.line())
                .unwrap_or_default()
                .saturating_add(first_line.saturating_sub(1));
            format!("{message} (line {line}, column {})", location.column())
        }
        None => message.to_owned(),
    }
}

/// Drops the location saphyr puts in its message ("line 6 column 11: ..." or "... at line 6
/// column 11"): it counts from the document, not the file.
fn strip_location(message: &str) -> &str {
    let message = match message.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(message, |(_, m)| m),
        None => message,
    };
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

fn is_blank(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// Splits multi-document YAML on `---` lines the way kubectl does: a line starting with
/// `---` followed by nothing or a comment. (`...` document-end lines end a document too.)
/// Returns each chunk with its first line number.
fn split_yaml(text: &str) -> Vec<(usize, String)> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let rest = line
            .strip_prefix("---")
            .or_else(|| line.strip_prefix("..."))
            .map(str::trim);
        if rest.is_some_and(|r| r.is_empty() || r.starts_with('#')) {
            chunks.push((start, std::mem::take(&mut current)));
            start = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push((start, current));
    chunks
}

/// A `kind: List` (or `<Kind>List`) document becomes its items; anything else is kept.
fn flatten(
    origin: Origin,
    value: Value,
    documents: &mut Vec<Document>,
    errors: &mut Vec<InputError>,
) {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_list = kind.ends_with("List") && value.get("items").is_some();
    if !is_list {
        documents.push(Document { origin, value });
        return;
    }
    let Some(items) = value.get("items").and_then(Value::as_array) else {
        if !value.get("items").is_some_and(Value::is_null) {
            errors.push(InputError::ListItems {
                origin,
                kind: kind.to_owned(),
            });
        }
        return;
    };
    // A typed list from the API (NamespaceList) may omit each item's kind and apiVersion.
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
    let api_version = value.get("apiVersion").cloned();
    for (index, item) in items.iter().enumerate() {
        let mut item = item.clone();
        if let (Value::Object(map), Some(item_kind)) = (&mut item, item_kind) {
            map.entry("kind")
                .or_insert_with(|| Value::String(item_kind.to_owned()));
            if let Some(api_version) = &api_version {
                map.entry("apiVersion")
                    .or_insert_with(|| api_version.clone());
            }
        }
        flatten(
            Origin {
                item: Some(index + 1),
                ..origin.clone()
            },
            item,
            documents,
            errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Vec<InputError>) {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        parse_text("f.yaml", text, Format::Sniff, &mut documents, &mut errors);
        (documents, errors)
    }

    #[test]
    fn documents_are_numbered_skipping_empty_ones() {
        let (docs, errors) =
            parse("# header\n---\nkind: A\n---\n\n---\nkind: B\n--- # c\nkind: C\n...\n");
        assert!(errors.is_empty(), "{errors:?}");
        let seen: Vec<_> = docs
            .iter()
            .map(|d| (d.origin.document, d.origin.line, d.value["kind"].clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, 3, Value::from("A")),
                (2, 7, Value::from("B")),
                (3, 9, Value::from("C")),
            ]
        );
    }

    #[test]
    fn a_yaml_error_names_document_and_file_line() {
        let (_, errors) = parse("kind: A\n---\nkind: B\nmetadata: {name: [\n");
        assert_eq!(errors.len(), 1);
        let InputError::Yaml { origin, .. } = &errors[0] else {
            panic!("a YAML error: {errors:?}");
        };
        assert_eq!((origin.file.as_str(), origin.document), ("f.yaml", 2));
        let message = errors[0].to_string();
        assert!(
            message.starts_with("f.yaml: document 2: invalid YAML"),
            "{message}"
        );
        assert!(message.contains("(line 4, column"), "{message}");
        assert!(!message.contains("error:"), "{message}");
    }

    #[test]
    fn lists_are_flattened_and_typed_lists_get_item_kinds() {
        let (docs, errors) = parse(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n---\napiVersion: v1\nkind: NamespaceList\nitems:\n- metadata: {name: b}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["kind"], "Namespace");
        assert_eq!(docs[1].value["apiVersion"], "v1");
        assert_eq!(docs[1].origin.to_string(), "f.yaml: document 2, item 1");
    }

    #[test]
    fn json_is_one_document() {
        let (docs, errors) = parse("{\"kind\": \"List\", \"items\": [{\"kind\": \"Namespace\"}]}");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].origin.item, Some(1));
    }
}
