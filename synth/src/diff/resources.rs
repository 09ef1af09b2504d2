//! Resources added, removed and changed between two templates, with the property paths that
//! changed and what each change does to the live resource; and the same, without replacement,
//! for the named entries of Parameters, Conditions, Mappings and Outputs.

use serde_json::{Map, Value};

use super::replacement::{self, Update};
use super::values::{self, JsonPath, Segment};

/// The sections compared entry by entry besides `Resources`, in the order they are reported.
pub const SECTIONS: [&str; 4] = ["Parameters", "Conditions", "Mappings", "Outputs"];

/// Whether an entry is new, gone, or on both sides and different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One path that differs inside an entry, its values rendered by [`values::show`] (`None`:
/// absent on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyChange {
    /// E.g. `Properties.MemorySize`.
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// What this change does to the live resource (always `InPlace` outside `Resources`).
    pub update: Update,
    /// Where the template text is the same but the property refers to a resource that is
    /// replaced: that resource's logical ID (see [`super::follow`]).
    pub via: Option<String>,
}

/// A resource that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDiff {
    pub logical_id: String,
    pub change: Change,
    /// The type on the side it is on (NEW's when on both).
    pub type_name: String,
    /// OLD's type, where the type itself changed (a replacement).
    pub old_type: Option<String>,
    /// What changed, for a changed resource; empty for one added or removed.
    pub changes: Vec<PropertyChange>,
    /// The most disruptive of `changes` (`InPlace` for one added or removed).
    pub update: Update,
}

/// An entry of Parameters, Conditions, Mappings or Outputs that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDiff {
    pub name: String,
    pub change: Change,
    pub changes: Vec<PropertyChange>,
}

/// The entries of `section` of a template (empty when it has none).
fn section<'a>(template: &'a Value, section: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    template
        .get(section)
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Every resource that differs between the templates, sorted by logical ID, with the
/// replacements that follow from others.
pub fn diff_resources(old: &Value, new: &Value) -> Vec<ResourceDiff> {
    let (o, n) = (section(old, "Resources"), section(new, "Resources"));
    let mut diffs = values::sorted_keys(o, n)
        .into_iter()
        .filter_map(|id| resource(id, o.get(id), n.get(id)))
        .collect();
    super::follow::add_follow_on_replacements(new, &mut diffs);
    diffs
}

fn type_of(r: &Value) -> String {
    r.get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// How one resource differs, if it does.
fn resource(id: &str, old: Option<&Value>, new: Option<&Value>) -> Option<ResourceDiff> {
    let one_sided = |change, r: &Value| ResourceDiff {
        logical_id: id.to_owned(),
        change,
        type_name: type_of(r),
        old_type: None,
        changes: Vec::new(),
        update: Update::InPlace,
    };
    match (old, new) {
        (None, Some(n)) => Some(one_sided(Change::Added, n)),
        (Some(o), None) => Some(one_sided(Change::Removed, o)),
        (Some(o), Some(n)) if o != n => Some(changed(id, o, n)),
        _ => None,
    }
}

/// A resource on both sides that differs: its changes, each classified.
fn changed(id: &str, old: &Value, new: &Value) -> ResourceDiff {
    let (old_type, type_name) = (type_of(old), type_of(new));
    let retyped = old_type != type_name;
    let changes: Vec<PropertyChange> = values::differences(old, new, JsonPath::default())
        .into_iter()
        .map(|d| {
            let update = match d.path.0.split_first() {
                _ if retyped => Update::Replaces,
                Some((Segment::Key(k), rest)) if k == "Properties" => {
                    replacement::classify(&type_name, rest, d.old, d.new)
                }
                _ => Update::InPlace,
            };
            property_change(d, update)
        })
        .collect();
    let update = changes
        .iter()
        .map(|c| c.update)
        .max()
        .unwrap_or(Update::InPlace);
    ResourceDiff {
        logical_id: id.to_owned(),
        change: Change::Changed,
        type_name,
        old_type: retyped.then_some(old_type),
        changes,
        update,
    }
}

fn property_change(d: values::Difference<'_>, update: Update) -> PropertyChange {
    PropertyChange {
        path: d.path.to_string(),
        old: d.old.map(values::show),
        new: d.new.map(values::show),
        update,
        via: None,
    }
}

/// The entries of [`SECTIONS`] that differ, per section, leaving out sections without any.
pub fn diff_sections(old: &Value, new: &Value) -> Vec<(&'static str, Vec<EntryDiff>)> {
    SECTIONS
        .into_iter()
        .map(|name| (name, entries(section(old, name), section(new, name))))
        .filter(|(_, e)| !e.is_empty())
        .collect()
}

/// The entries of one section that differ, sorted by name.
fn entries(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<EntryDiff> {
    values::sorted_keys(old, new)
        .into_iter()
        .filter_map(|name| {
            let (change, changes) = match (old.get(name), new.get(name)) {
                (None, Some(_)) => (Change::Added, Vec::new()),
                (Some(_), None) => (Change::Removed, Vec::new()),
                (Some(o), Some(n)) if o != n => (
                    Change::Changed,
                    values::differences(o, n, JsonPath::default())
                        .into_iter()
                        .map(|d| property_change(d, Update::InPlace))
                        .collect(),
                ),
                _ => return None,
            };
            Some(EntryDiff {
                name: name.clone(),
                change,
                changes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_type_change_replaces() {
        let old = json!({"Resources": {"A": {"Type": "AWS::SQS::Queue"}}});
        let new = json!({"Resources": {"A": {"Type": "AWS::SNS::Topic"}}});
        let d = diff_resources(&old, &new);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].update, Update::Replaces);
        assert_eq!(d[0].old_type.as_deref(), Some("AWS::SQS::Queue"));
    }

    #[test]
    fn outputs_added_removed_changed() {
        let old = json!({"Resources": {}, "Outputs": {"A": {"Value": "1"}, "B": {"Value": "x"}}});
        let new = json!({"Resources": {}, "Outputs": {"B": {"Value": "y"}, "C": {"Value": "z"}}});
        let s = diff_sections(&old, &new);
        assert_eq!(s.len(), 1);
        let (name, e) = &s[0];
        assert_eq!(*name, "Outputs");
        let summary: Vec<(&str, Change)> = e.iter().map(|e| (e.name.as_str(), e.change)).collect();
        assert_eq!(
            summary,
            [
                ("A", Change::Removed),
                ("B", Change::Changed),
                ("C", Change::Added)
            ]
        );
        assert_eq!(e[1].changes[0].path, "Value");
        assert_eq!(e[1].changes[0].new.as_deref(), Some("\"y\""));
    }
}
