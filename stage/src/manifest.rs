//! The app manifest, `wsstack.toml` at the workspace root: what the application adds to the
//! chat for every stage. Today that is the forwarded actions (`[[forward]]`): client actions
//! that the `forward` handler puts on the stage's EventBridge bus for a backend to act on.
//!
//! Like a stage file, a bad manifest is an error naming the file, line, column and field, and
//! what is allowed; unknown keys are refused.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wsstack_routes::ROUTES;
use wsstack_routes::bridge::{DEFAULT_MAX_DATA_BYTES, ForwardedAction, MAX_MAX_DATA_BYTES};

use crate::{FieldPath, line_column};

/// Where the manifest lives, relative to the workspace root.
pub const DEFAULT_MANIFEST_PATH: &str = "wsstack.toml";

/// The shipped manifest, built in: what `synth` reads when it runs where no `wsstack.toml` is
/// (and `--manifest` is not given).
pub const EMBEDDED: &str = include_str!("../../wsstack.toml");

/// The longest action name: a route key, and the stem of logical IDs.
pub const MAX_ACTION_NAME_LEN: usize = 64;

/// An error in the manifest or in reading it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read the app manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the field, e.g. `forward[0].name`.
        field: String,
        message: String,
    },
}

/// The app manifest, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The forwarded actions, in the manifest's order (names unique).
    pub forward: Vec<ForwardedAction>,
}

impl Manifest {
    /// Whether the stacks get the bridge's bus and the `forward` handler.
    pub fn has_forwarded_actions(&self) -> bool {
        !self.forward.is_empty()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    forward: Vec<ForwardEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardEntry {
    name: toml::Spanned<String>,
    max_data_bytes: Option<toml::Spanned<i64>>,
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// The built-in manifest ([`EMBEDDED`]), checked like a file.
pub fn embedded() -> Result<Manifest, ManifestError> {
    parse(EMBEDDED, Path::new(DEFAULT_MANIFEST_PATH))
}

/// The manifest at `path`; without one, `wsstack.toml` in the current folder, or the shipped
/// one ([`embedded`]) where there is none: what synth and the local gateway read.
pub fn load_or_default(path: Option<&Path>) -> Result<Manifest, ManifestError> {
    match path {
        Some(path) => load(path),
        None => {
            let default = Path::new(DEFAULT_MANIFEST_PATH);
            if default.exists() {
                load(default)
            } else {
                embedded()
            }
        }
    }
}

/// Whether `name` is usable as a forwarded action's name: 1 to 64 ASCII letters and digits,
/// starting with a lowercase letter, like the built-in actions (`sendMessage`). It is a route
/// key, matched exactly; its first letter upper-cased is the stem of its logical IDs, so two
/// names never give one stem. (`$` keys are API Gateway's; `Push`, the `detail-type` of replies
/// through the bus, cannot be an action's.)
pub fn is_valid_action_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ACTION_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter().all(u8::is_ascii_alphanumeric)
}

/// Parses and checks a manifest's text. `path` is only for messages.
pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let invalid = |span: Option<Range<usize>>, field: String, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ManifestError::Invalid {
            path: path.to_owned(),
            line,
            column,
            field,
            message,
        }
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| invalid(e.span(), "(syntax)".to_owned(), e.message().to_owned()))?;
    let file: ManifestFile = serde_path_to_error::deserialize(de).map_err(|e| {
        // `forward[0].name`, as the messages of the checks below spell it.
        let field = FieldPath(e.path()).to_string().replace(".[", "[");
        let inner = e.into_inner();
        invalid(inner.span(), field, inner.message().to_owned())
    })?;

    let mut seen = BTreeSet::new();
    let mut forward = Vec::with_capacity(file.forward.len());
    for (i, entry) in file.forward.iter().enumerate() {
        let name = entry.name.get_ref();
        let span = Some(entry.name.span());
        let field = format!("forward[{i}].name");
        if !is_valid_action_name(name) {
            return Err(invalid(
                span,
                field,
                format!(
                    "`{name}` is not an action name: 1 to {MAX_ACTION_NAME_LEN} ASCII letters and digits, starting with a lowercase letter (like sendMessage)"
                ),
            ));
        }
        if ROUTES.iter().any(|r| r.key == name) {
            let builtin: Vec<&str> = wsstack_routes::client_actions().collect();
            return Err(invalid(
                span,
                field,
                format!(
                    "`{name}` is a built-in route; a forwarded action needs a name of its own (built-in: {})",
                    builtin.join(", ")
                ),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid(
                span,
                field,
                format!("`{name}` is forwarded twice: each action is declared once"),
            ));
        }
        let max_data_bytes = match &entry.max_data_bytes {
            None => DEFAULT_MAX_DATA_BYTES,
            Some(v) => {
                let n = *v.get_ref();
                u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_MAX_DATA_BYTES).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            Some(v.span()),
                            format!("forward[{i}].max_data_bytes"),
                            format!(
                                "{n} is out of range: allowed 1..={MAX_MAX_DATA_BYTES} bytes (a WebSocket message is at most 128 KB)"
                            ),
                        )
                    })?
            }
        };
        forward.push(ForwardedAction {
            name: name.clone(),
            max_data_bytes,
        });
    }
    Ok(Manifest { forward })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("wsstack.toml"))
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn the_shipped_manifest_forwards_submit_job() {
        let m = embedded().expect("valid");
        assert_eq!(
            m.forward,
            [ForwardedAction {
                name: "submitJob".to_owned(),
                max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            }]
        );
        let from_disk =
            load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsstack.toml")).expect("the file");
        assert_eq!(from_disk, m);
    }

    #[test]
    fn empty_means_no_forwarded_actions() {
        let m = parse("", Path::new("wsstack.toml")).expect("valid");
        assert!(!m.has_forwarded_actions());
    }

    #[test]
    fn entries_keep_their_order_and_sizes() {
        let m = parse(
            "[[forward]]\nname = \"b\"\nmax_data_bytes = 1\n[[forward]]\nname = \"a1\"\nmax_data_bytes = 131072\n",
            Path::new("wsstack.toml"),
        )
        .expect("valid");
        let got: Vec<(&str, u32)> = m
            .forward
            .iter()
            .map(|a| (a.name.as_str(), a.max_data_bytes))
            .collect();
        assert_eq!(got, [("b", 1), ("a1", MAX_MAX_DATA_BYTES)]);
    }

    #[test]
    fn a_duplicate_names_its_second_line() {
        assert_eq!(
            err("[[forward]]\nname = \"job\"\n\n[[forward]]\nname = \"job\"\n"),
            "wsstack.toml:5:8: forward[1].name: `job` is forwarded twice: each action is declared once"
        );
    }

    #[test]
    fn every_built_in_route_is_reserved() {
        for key in wsstack_routes::client_actions() {
            let e = err(&format!("[[forward]]\nname = \"{key}\"\n"));
            assert!(
                e.starts_with("wsstack.toml:2:8: forward[0].name: ")
                    && e.contains("is a built-in route"),
                "{e}"
            );
        }
        // `$` keys are API Gateway's: not a name at all.
        let e = err("[[forward]]\nname = \"$default\"\n");
        assert!(
            e.starts_with("wsstack.toml:2:8: forward[0].name: `$default` is not an action name"),
            "{e}"
        );
    }

    #[test]
    fn names_are_camel_case_route_keys() {
        for bad in [
            "",
            "Job",
            "submit-job",
            "submit_job",
            "job!",
            &"a".repeat(65),
        ] {
            let e = err(&format!("[[forward]]\nname = \"{bad}\"\n"));
            assert!(e.contains("is not an action name"), "{bad}: {e}");
            assert!(e.starts_with("wsstack.toml:2:8:"), "{e}");
        }
        assert!(is_valid_action_name(&"a".repeat(64)));
        assert!(is_valid_action_name("submitJob2"));
    }

    #[test]
    fn max_data_bytes_is_ranged() {
        for bad in ["0", "-1", "131073", "99999999999"] {
            let e = err(&format!(
                "[[forward]]\nname = \"job\"\nmax_data_bytes = {bad}\n"
            ));
            assert_eq!(
                e,
                format!(
                    "wsstack.toml:3:18: forward[0].max_data_bytes: {bad} is out of range: allowed 1..=131072 bytes (a WebSocket message is at most 128 KB)"
                )
            );
        }
        let e = err("[[forward]]\nname = \"job\"\nmax_data_bytes = \"big\"\n");
        assert!(
            e.starts_with("wsstack.toml:3:18: forward[0].max_data_bytes: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_where_they_are() {
        let e = err("[[forward]]\nname = \"job\"\ntimeout = 3\n");
        assert!(
            e.starts_with("wsstack.toml:3:1: forward[0].timeout: unknown field `timeout`"),
            "{e}"
        );
        let e = err("[[forward]]\nname = \"job\"\n[stage]\n");
        assert!(e.contains("unknown field `stage`"), "{e}");
        assert!(e.starts_with("wsstack.toml:3:"), "{e}");
        let e = err("[[forward]]\nmax_data_bytes = 3\n");
        assert!(e.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn bad_toml_names_its_line() {
        let e = err("[[forward]]\nname = \"job\n");
        assert!(e.starts_with("wsstack.toml:2:"), "{e}");
        assert!(e.contains("(syntax)"), "{e}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = load(Path::new("/nonexistent/wsstack.toml")).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/wsstack.toml: cannot read the app manifest"),
            "{e}"
        );
    }
}
