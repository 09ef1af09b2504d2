//! JSON values compared path by path, and rendered for people: `Ref X` as `${X}`,
//! `Fn::GetAtt X.Y` as `${X.Y}`, `Fn::Sub` as its string.

use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into a template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into a template, e.g. `Properties.Policies[0].PolicyName`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct JsonPath(pub Vec<Segment>);

impl JsonPath {
    fn child(&self, s: Segment) -> JsonPath {
        let mut p = self.0.clone();
        p.push(s);
        JsonPath(p)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A value that differs at `path`; `None` where the path is absent on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference<'a> {
    pub path: JsonPath,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
}

/// Every path where `old` and `new` differ, in path order. Objects are compared key by key,
/// arrays of the same length item by item; an intrinsic function, or arrays whose lengths
/// differ, differ as a whole.
pub fn differences<'a>(old: &'a Value, new: &'a Value, at: JsonPath) -> Vec<Difference<'a>> {
    let mut out = Vec::new();
    walk(Some(old), Some(new), at, &mut out);
    out
}

fn walk<'a>(
    old: Option<&'a Value>,
    new: Option<&'a Value>,
    at: JsonPath,
    out: &mut Vec<Difference<'a>>,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n)))
            if !is_intrinsic(o) && !is_intrinsic(n) =>
        {
            for key in sorted_keys(o, n) {
                walk(
                    o.get(key),
                    n.get(key),
                    at.child(Segment::Key(key.clone())),
                    out,
                );
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if o.len() == n.len() => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                walk(Some(a), Some(b), at.child(Segment::Index(i)), out);
            }
        }
        (Some(ov @ Value::Array(o)), Some(nv @ Value::Array(n))) => {
            let before = out.len();
            items_in_one(o, n, &at, out);
            if out.len() == before {
                out.push(Difference {
                    path: at,
                    old: Some(ov),
                    new: Some(nv),
                });
            }
        }
        _ => out.push(Difference { path: at, old, new }),
    }
}

/// Arrays of different lengths: each item of OLD missing from NEW (at its OLD index), then
/// each item of NEW missing from OLD (at its NEW index). Finds nothing where the arrays hold
/// the same items, repeated differently.
fn items_in_one<'a>(o: &'a [Value], n: &'a [Value], at: &JsonPath, out: &mut Vec<Difference<'a>>) {
    for (i, item) in o.iter().enumerate().filter(|(_, v)| !n.contains(v)) {
        out.push(Difference {
            path: at.child(Segment::Index(i)),
            old: Some(item),
            new: None,
        });
    }
    for (i, item) in n.iter().enumerate().filter(|(_, v)| !o.contains(v)) {
        out.push(Difference {
            path: at.child(Segment::Index(i)),
            old: None,
            new: Some(item),
        });
    }
}

/// The keys of both objects, sorted, each once.
pub fn sorted_keys<'m>(a: &'m Map<String, Value>, b: &'m Map<String, Value>) -> Vec<&'m String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `{"Ref": ...}` or `{"Fn::...": ...}`: one key, an intrinsic function.
fn is_intrinsic(o: &Map<String, Value>) -> bool {
    o.len() == 1
        && o.keys()
            .next()
            .is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

/// A value for a diff line: strings quoted, intrinsics as `${...}`, objects and arrays inline.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Object(o) if is_intrinsic(o) => intrinsic(o),
        Value::Object(o) => {
            let fields: Vec<String> = o.iter().map(|(k, v)| format!("{k}: {}", show(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A value as text: strings bare, intrinsics as `${...}`, anything else as [`show`] does.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// An intrinsic function, readably.
fn intrinsic(o: &Map<String, Value>) -> String {
    let Some((name, arg)) = o.iter().next() else {
        return "{}".to_owned();
    };
    match (name.as_str(), arg) {
        ("Ref", Value::String(r)) => format!("${{{r}}}"),
        ("Fn::GetAtt", Value::String(a)) => format!("${{{a}}}"),
        ("Fn::GetAtt", Value::Array(a)) => {
            let parts: Vec<String> = a.iter().map(plain).collect();
            format!("${{{}}}", parts.join("."))
        }
        ("Fn::Sub", Value::String(s)) => s.clone(),
        ("Fn::Sub", Value::Array(a)) => sub_with_variables(a),
        ("Fn::Join", Value::Array(a)) => join(a),
        _ => format!("{name}({})", show(arg)),
    }
}

/// `Fn::Sub [string, {var: value}]`: the string with each `${var}` replaced by its value.
fn sub_with_variables(a: &[Value]) -> String {
    let Some(Value::String(text)) = a.first() else {
        return format!("Fn::Sub({})", show(&Value::Array(a.to_vec())));
    };
    let mut text = text.clone();
    if let Some(Value::Object(vars)) = a.get(1) {
        for (name, value) in vars {
            text = text.replace(&format!("${{{name}}}"), &plain(value));
        }
    }
    text
}

/// `Fn::Join [delimiter, [parts]]`: the parts joined.
fn join(a: &[Value]) -> String {
    match (a.first(), a.get(1)) {
        (Some(Value::String(d)), Some(Value::Array(parts))) => {
            parts.iter().map(plain).collect::<Vec<_>>().join(d)
        }
        _ => format!("Fn::Join({})", show(&Value::Array(a.to_vec()))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn intrinsics_read_as_substitutions() {
        assert_eq!(
            plain(&json!({"Ref": "ConnectionsTable"})),
            "${ConnectionsTable}"
        );
        assert_eq!(plain(&json!({"Fn::GetAtt": ["T", "Arn"]})), "${T.Arn}");
        assert_eq!(plain(&json!({"Fn::GetAtt": "T.Arn"})), "${T.Arn}");
        assert_eq!(
            plain(&json!({"Fn::Sub": "arn:${AWS::Partition}:x"})),
            "arn:${AWS::Partition}:x"
        );
        assert_eq!(
            plain(&json!({"Fn::Sub": ["${A}/index/*", {"A": {"Fn::GetAtt": ["T", "Arn"]}}]})),
            "${T.Arn}/index/*"
        );
        assert_eq!(
            plain(&json!({"Fn::Join": ["", ["wss://", {"Ref": "Api"}, "/dev"]]})),
            "wss://${Api}/dev"
        );
        assert_eq!(
            plain(&json!({"Fn::Select": [0, ["a"]]})),
            "Fn::Select([0, [\"a\"]])"
        );
        assert_eq!(show(&json!("a")), "\"a\"");
        assert_eq!(show(&json!({"A": [1, true]})), "{A: [1, true]}");
    }

    #[test]
    fn differences_by_path() {
        let old = json!({"A": 1, "B": {"C": [1, 2], "D": [1], "G": [1, 1]}, "E": {"Ref": "X"}});
        let new = json!({"B": {"C": [1, 3], "D": [1, 2], "G": [1]}, "E": {"Ref": "Y"}, "F": null});
        let got: Vec<String> = differences(&old, &new, JsonPath::default())
            .iter()
            .map(|d| {
                let side = |v: Option<&Value>| v.map_or("-".to_owned(), show);
                format!("{}: {} -> {}", d.path, side(d.old), side(d.new))
            })
            .collect();
        assert_eq!(
            got,
            [
                "A: 1 -> -",
                "B.C[1]: 2 -> 3",
                "B.D[1]: - -> 2",
                "B.G: [1, 1] -> [1]",
                "E: ${X} -> ${Y}",
                "F: - -> null"
            ]
        );
    }
}
