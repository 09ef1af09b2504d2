//! Which property changes replace the live resource: each resource type's
//! `createOnlyProperties` and `conditionalCreateOnlyProperties`, from the table
//! `replacement.tsv` that `scripts/replacement_table.py` generates from cfn-lint's pinned
//! resource schemas (checked against them by `synth/tests/tools.rs`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::values::Segment;

/// The checked-in table: type, create-only paths, conditionally create-only paths.
const TABLE: &str = include_str!("replacement.tsv");

/// What a change does to the live resource, from least to most disruptive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Update {
    /// Updated in place (or not an update of the resource at all: metadata, dependencies).
    InPlace,
    /// The type is not in the table: nobody can tell here.
    Unknown,
    /// A conditionally create-only property: CloudFormation replaces the resource in some
    /// cases (e.g. a DynamoDB `KeySchema`).
    MayReplace,
    /// A create-only property, or the type changed: a new resource replaces the live one.
    Replaces,
}

/// A resource type's create-only property paths, each split at `.` (`*`: any array item).
#[derive(Debug, Default)]
pub struct CreateOnly {
    pub always: Vec<Vec<String>>,
    pub conditional: Vec<Vec<String>>,
}

fn table() -> &'static HashMap<&'static str, CreateOnly> {
    static PARSED: OnceLock<HashMap<&'static str, CreateOnly>> = OnceLock::new();
    PARSED.get_or_init(|| parse(TABLE))
}

/// Parses the table; comment lines start with `#`.
fn parse(text: &'static str) -> HashMap<&'static str, CreateOnly> {
    let paths = |field: Option<&str>| -> Vec<Vec<String>> {
        field
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect()
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let type_name = fields.next().unwrap_or("");
            let always = paths(fields.next());
            let conditional = paths(fields.next());
            (
                type_name,
                CreateOnly {
                    always,
                    conditional,
                },
            )
        })
        .collect()
}

/// The create-only properties of `type_name`, if the table knows the type.
pub fn lookup(type_name: &str) -> Option<&'static CreateOnly> {
    table().get(type_name)
}

/// Every resource type the table knows, sorted.
pub fn known_types() -> Vec<&'static str> {
    let mut t: Vec<&str> = table().keys().copied().collect();
    t.sort_unstable();
    t
}

/// What a difference at `path` (below `Properties`) of a `type_name` resource does, given the
/// values at `path` on each side (`None`: absent).
pub fn classify(
    type_name: &str,
    path: &[Segment],
    old: Option<&Value>,
    new: Option<&Value>,
) -> Update {
    let Some(c) = lookup(type_name) else {
        return Update::Unknown;
    };
    let hits = |paths: &[Vec<String>]| paths.iter().any(|p| touches(p, path, old, new));
    if hits(&c.always) {
        Update::Replaces
    } else if hits(&c.conditional) {
        Update::MayReplace
    } else {
        Update::InPlace
    }
}

/// Whether a difference at `path` changes the create-only property at `create_only`: it is at
/// or below it, or above it and the values there differ.
fn touches(
    create_only: &[String],
    path: &[Segment],
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    let common = create_only.len().min(path.len());
    let same_prefix = create_only[..common]
        .iter()
        .zip(&path[..common])
        .all(|(c, p)| match p {
            Segment::Key(k) => c == "*" || c == k,
            Segment::Index(_) => c == "*",
        });
    if !same_prefix {
        return false;
    }
    let rest = &create_only[common..];
    rest.is_empty() || below(old, rest) != below(new, rest)
}

/// The value at `rest` below `v`; a `*` compares the whole array (any item may differ).
fn below<'a>(v: Option<&'a Value>, rest: &[String]) -> Option<&'a Value> {
    let mut v = v?;
    for key in rest {
        if key == "*" {
            return Some(v);
        }
        v = v.get(key)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(path: &[&str]) -> Vec<Segment> {
        path.iter().map(|k| Segment::Key((*k).to_owned())).collect()
    }

    /// A type synth can write but the table lacks would make every change of it "unknown".
    #[test]
    fn the_table_covers_every_type_synth_writes() {
        let known = known_types();
        for t in crate::cfn::resources::ALL_TYPES {
            assert!(
                known.contains(t),
                "{t} is not in replacement.tsv: run scripts/replacement_table.py"
            );
        }
        assert!(known.len() > 1000, "the whole provider schema set");
    }

    #[test]
    fn create_only_properties_replace() {
        let (a, b) = (json!("a.example.com"), json!("b.example.com"));
        let domain = "AWS::ApiGatewayV2::DomainName";
        assert_eq!(
            classify(domain, &keys(&["DomainName"]), Some(&a), Some(&b)),
            Update::Replaces
        );
        assert_eq!(
            classify(
                domain,
                &keys(&["DomainNameConfigurations"]),
                Some(&a),
                Some(&b)
            ),
            Update::InPlace
        );
        let function = "AWS::Lambda::Function";
        assert_eq!(
            classify(
                function,
                &keys(&["MemorySize"]),
                Some(&json!(128)),
                Some(&json!(256))
            ),
            Update::InPlace
        );
        assert_eq!(
            classify(
                "AWS::DynamoDB::Table",
                &keys(&["KeySchema"]),
                None,
                Some(&a)
            ),
            Update::MayReplace
        );
        assert_eq!(classify("Custom::Thing", &[], None, None), Update::Unknown);
    }

    #[test]
    fn a_difference_above_a_create_only_property_replaces_only_if_it_changes_it() {
        let c = vec!["Config".to_owned(), "Name".to_owned()];
        let old = json!({"Name": "a", "Size": 1});
        let resized = json!({"Name": "a", "Size": 2});
        let renamed = json!({"Name": "b", "Size": 1});
        let at = keys(&["Config"]);
        assert!(!touches(&c, &at, Some(&old), Some(&resized)));
        assert!(touches(&c, &at, Some(&old), Some(&renamed)));
        assert!(touches(&c, &keys(&["Config", "Name", "X"]), None, None));
        assert!(!touches(&c, &keys(&["Other"]), None, None));
        let items = vec!["Tags".to_owned(), "*".to_owned(), "Key".to_owned()];
        let tag = [Segment::Key("Tags".into()), Segment::Index(2)];
        let (a, b) = (
            json!({"Key": "a", "Value": 1}),
            json!({"Key": "a", "Value": 2}),
        );
        assert!(touches(&items, &tag, None, Some(&a)));
        assert!(!touches(&items, &tag, Some(&a), Some(&b)));
    }
}
