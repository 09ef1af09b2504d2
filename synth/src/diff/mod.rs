//! `synth diff OLD NEW`: what deploying NEW over OLD would change, stack by stack.
//!
//! Each side is a cloud assembly (`cdk.out/`, its `manifest.json` naming the stacks and their
//! template files) or a single template JSON file. Per stack: resources added, removed and
//! changed (the property paths that changed, and whether the change replaces the live
//! resource, from the create-only properties of [`replacement`]), IAM statements granted and
//! revoked ([`iam`]), and Outputs, Parameters, Conditions and Mappings added, removed and
//! changed. [`render`] prints it for a terminal or a pull request.
//!
//! - [`load`]: the two sides, read and checked, stacks paired by artifact ID.
//! - [`values`]: JSON values compared path by path, intrinsics rendered readably.
//! - [`resources`]: the resource and section comparison.
//! - [`replacement`]: the checked-in table of create-only properties.
//! - [`follow`]: replacements that follow from others (a create-only `Ref` to a replaced
//!   resource).
//! - [`iam`]: the grants of roles and policies, compared.
//! - [`render`]: plain text and Markdown.
//!
//! Everything is sorted: the same inputs give the same output.

pub mod follow;
pub mod iam;
pub mod load;
pub mod render;
pub mod replacement;
pub mod resources;
pub mod values;

use std::path::{Path, PathBuf};

pub use iam::IamChange;
pub use render::Format;
pub use replacement::Update;
pub use resources::{Change, EntryDiff, PropertyChange, ResourceDiff};

/// Why a side of the diff cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    Missing { path: PathBuf },
    /// The path exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{}: malformed JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but not the shape a template or a manifest has.
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

impl DiffError {
    pub(crate) fn invalid(path: &Path, what: impl Into<String>) -> Self {
        DiffError::Invalid {
            path: path.to_owned(),
            what: what.into(),
        }
    }
}

/// Whether a stack is on both sides or on one only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StackPresence {
    Both,
    /// Only in NEW: deploying creates it.
    Added,
    /// Only in OLD.
    Removed,
}

/// What changed in one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDiff {
    /// The artifact ID (`WsstackDev`), or the template's file stem.
    pub id: String,
    /// The CloudFormation stack name, where the manifest gives it (`wsstack-dev`).
    pub stack_name: Option<String>,
    pub presence: StackPresence,
    /// Sorted by logical ID.
    pub resources: Vec<ResourceDiff>,
    /// Sorted: revocations and grants by holder, action, resource.
    pub iam: Vec<IamChange>,
    /// `(section, entries)` for Parameters, Conditions, Mappings, Outputs, in that order;
    /// sections without changes are left out.
    pub sections: Vec<(&'static str, Vec<EntryDiff>)>,
}

impl StackDiff {
    /// Nothing changed in this stack.
    pub fn is_empty(&self) -> bool {
        self.presence == StackPresence::Both
            && self.resources.is_empty()
            && self.iam.is_empty()
            && self.sections.is_empty()
    }
}

/// Every stack that changed, sorted by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub stacks: Vec<StackDiff>,
}

impl Report {
    /// Nothing changed anywhere: `synth diff` prints nothing and exits 0.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }
}

/// Reads both sides (assembly directories or template files) and compares them.
pub fn diff_paths(old: &Path, new: &Path) -> Result<Report, DiffError> {
    let old = load::load(old)?;
    let new = load::load(new)?;
    Ok(diff_sides(&old, &new))
}

/// Compares two loaded sides, stack by stack.
pub fn diff_sides(old: &load::Side, new: &load::Side) -> Report {
    let empty = load::LoadedStack::empty();
    let mut stacks: Vec<StackDiff> = load::pair(old, new)
        .into_iter()
        .map(|(o, n)| {
            let presence = match (o, n) {
                (Some(_), Some(_)) => StackPresence::Both,
                (None, _) => StackPresence::Added,
                (_, None) => StackPresence::Removed,
            };
            let (o, n) = (o.unwrap_or(&empty), n.unwrap_or(&empty));
            let named = if presence == StackPresence::Removed {
                o
            } else {
                n
            };
            StackDiff {
                id: named.id.clone(),
                stack_name: named.stack_name.clone(),
                presence,
                resources: resources::diff_resources(&o.template, &n.template),
                iam: iam::diff(&o.template, &n.template),
                sections: resources::diff_sections(&o.template, &n.template),
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    stacks.sort_by(|a, b| a.id.cmp(&b.id));
    Report { stacks }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::load::{LoadedStack, Side};
    use super::*;

    fn stack(id: &str, resources: serde_json::Value) -> LoadedStack {
        LoadedStack {
            id: id.to_owned(),
            stack_name: Some(format!("stack-{id}")),
            template: json!({ "Resources": resources }),
        }
    }

    #[test]
    fn stacks_pair_by_id_and_one_sided_stacks_are_added_or_removed() {
        let queue = json!({"Q": {"Type": "AWS::SQS::Queue"}});
        let old = Side::Assembly(vec![stack("A", queue.clone()), stack("B", queue.clone())]);
        let new = Side::Assembly(vec![stack("B", queue.clone()), stack("C", queue.clone())]);
        let r = diff_sides(&old, &new);
        let got: Vec<(&str, StackPresence, usize)> = r
            .stacks
            .iter()
            .map(|s| (s.id.as_str(), s.presence, s.resources.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", StackPresence::Removed, 1),
                ("C", StackPresence::Added, 1)
            ]
        );
        assert_eq!(r.stacks[0].stack_name.as_deref(), Some("stack-A"));
        // A lone template pairs with the only stack of an assembly, whatever its name.
        let lone = Side::Template(stack("file", queue.clone()));
        let one = Side::Assembly(vec![stack("B", queue)]);
        assert!(diff_sides(&lone, &one).is_empty());
        assert!(diff_sides(&old, &old).is_empty());
    }
}
