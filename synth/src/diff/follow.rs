//! Replacements that follow from others: a resource whose create-only property refers (by
//! `Ref`, `Fn::GetAtt` or an `Fn::Sub` variable) to a resource being replaced gets a new value
//! there at deploy time, though its template text is the same, and may be replaced in turn
//! (`CustomDomainApiMapping` names `CustomDomainName` by `Ref`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::replacement::{self, Update};
use super::resources::{Change, PropertyChange, ResourceDiff};
use super::values;

/// Adds, until nothing more follows, a "may replace" change for each create-only property of
/// NEW's resources that refers to a resource replaced (or maybe replaced); keeps `diffs`
/// sorted by logical ID.
pub fn add_follow_on_replacements(new: &Value, diffs: &mut Vec<ResourceDiff>) {
    let Some(resources) = new.get("Resources").and_then(Value::as_object) else {
        return;
    };
    loop {
        let replaced: BTreeSet<&str> = diffs
            .iter()
            .filter(|d| d.change == Change::Changed && d.update >= Update::MayReplace)
            .map(|d| d.logical_id.as_str())
            .collect();
        let mut found = Vec::new();
        for (id, r) in resources {
            if replaced.contains(id.as_str()) || is_one_sided(diffs, id) {
                continue;
            }
            let changes = follow_ons(r, &replaced);
            if !changes.is_empty() {
                found.push((id.clone(), type_name(r), changes));
            }
        }
        if found.is_empty() {
            return;
        }
        for (id, type_name, changes) in found {
            merge(diffs, id, type_name, changes);
        }
        diffs.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    }
}

fn type_name(r: &Value) -> String {
    r.get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Added or removed: nothing to follow.
fn is_one_sided(diffs: &[ResourceDiff], id: &str) -> bool {
    diffs
        .iter()
        .any(|d| d.logical_id == id && d.change != Change::Changed)
}

/// The create-only properties of `r` that refer to a resource in `replaced`.
fn follow_ons(r: &Value, replaced: &BTreeSet<&str>) -> Vec<PropertyChange> {
    let Some(c) = replacement::lookup(&type_name(r)) else {
        return Vec::new();
    };
    let Some(props) = r.get("Properties") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in c.always.iter().chain(&c.conditional) {
        let Some(v) = at(props, path) else { continue };
        let mut refs = BTreeSet::new();
        references(v, &mut refs);
        if let Some(target) = refs.iter().find(|r| replaced.contains(r.as_str())) {
            let shown = values::show(v);
            out.push(PropertyChange {
                path: format!("Properties.{}", path.join(".")),
                old: Some(shown.clone()),
                new: Some(shown),
                update: Update::MayReplace,
                via: Some(target.clone()),
            });
        }
    }
    out
}

/// The value at a create-only path; a `*` stands for the whole array.
fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = v;
    for key in path {
        if key == "*" {
            return Some(v);
        }
        v = v.get(key)?;
    }
    Some(v)
}

/// Adds `changes` to the diff of `id`, or a new one.
fn merge(
    diffs: &mut Vec<ResourceDiff>,
    id: String,
    type_name: String,
    changes: Vec<PropertyChange>,
) {
    if let Some(d) = diffs.iter_mut().find(|d| d.logical_id == id) {
        d.changes.extend(changes);
        d.update = d.update.max(Update::MayReplace);
        return;
    }
    diffs.push(ResourceDiff {
        logical_id: id,
        change: Change::Changed,
        type_name,
        old_type: None,
        changes,
        update: Update::MayReplace,
    });
}

/// The logical IDs `v` refers to: `Ref`, `Fn::GetAtt`, and `Fn::Sub`'s `${X}`/`${X.Y}`
/// (pseudo parameters and `Fn::Sub`'s own variables left out).
pub fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, arg) in o {
                match (k.as_str(), arg) {
                    ("Ref", Value::String(r)) => insert(r, out),
                    ("Fn::GetAtt", Value::String(a)) => {
                        insert(a.split('.').next().unwrap_or(a), out)
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(Value::String(r)) = a.first() {
                            insert(r, out);
                        }
                    }
                    ("Fn::Sub", Value::String(s)) => sub_variables(s, &[], out),
                    ("Fn::Sub", Value::Array(a)) => {
                        let own: Vec<&String> = a
                            .get(1)
                            .and_then(Value::as_object)
                            .map(|m| m.keys().collect())
                            .unwrap_or_default();
                        if let Some(Value::String(s)) = a.first() {
                            sub_variables(s, &own, out);
                        }
                        a.iter().skip(1).for_each(|x| references(x, out));
                    }
                    _ => references(arg, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn insert(name: &str, out: &mut BTreeSet<String>) {
    if !name.starts_with("AWS::") {
        out.insert(name.to_owned());
    }
}

/// The `${X}` and `${X.Y}` of an `Fn::Sub` string, without `${!literal}` and `own` variables.
fn sub_variables(s: &str, own: &[&String], out: &mut BTreeSet<String>) {
    for part in s.split("${").skip(1) {
        let Some(name) = part.split('}').next() else {
            continue;
        };
        let name = name.split('.').next().unwrap_or(name);
        if !name.starts_with('!') && !own.iter().any(|o| o.as_str() == name) {
            insert(name, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_of_every_intrinsic() {
        let mut r = BTreeSet::new();
        references(
            &json!([{"Ref": "A"}, {"Ref": "AWS::Region"}, {"Fn::GetAtt": ["B", "Arn"]},
                {"Fn::GetAtt": "C.Arn"}, {"Fn::Sub": "${D}/${E.Arn}/${!F}/${AWS::Partition}"},
                {"Fn::Sub": ["${G}/${H}", {"G": {"Ref": "I"}}]}]),
            &mut r,
        );
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            ["A", "B", "C", "D", "E", "H", "I"]
        );
    }

    #[test]
    fn a_create_only_reference_to_a_replaced_resource_may_replace() {
        let new = json!({"Resources": {
            "Domain": {"Type": "AWS::ApiGatewayV2::DomainName", "Properties": {"DomainName": "b"}},
            "Mapping": {"Type": "AWS::ApiGatewayV2::ApiMapping",
                "Properties": {"DomainName": {"Ref": "Domain"}, "Stage": {"Ref": "Domain"}}},
            "Other": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"Name": {"Ref": "Domain"}}}
        }});
        let old = json!({"Resources": {
            "Domain": {"Type": "AWS::ApiGatewayV2::DomainName", "Properties": {"DomainName": "a"}},
            "Mapping": new["Resources"]["Mapping"].clone(),
            "Other": new["Resources"]["Other"].clone()
        }});
        let d = super::super::resources::diff_resources(&old, &new);
        let ids: Vec<(&str, Update)> = d
            .iter()
            .map(|d| (d.logical_id.as_str(), d.update))
            .collect();
        assert_eq!(
            ids,
            [
                ("Domain", Update::Replaces),
                ("Mapping", Update::MayReplace)
            ]
        );
        assert_eq!(d[1].changes[0].path, "Properties.DomainName");
        assert_eq!(d[1].changes[0].via.as_deref(), Some("Domain"));
    }
}
