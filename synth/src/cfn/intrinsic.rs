//! CloudFormation values that may be intrinsic functions, as one typed value.
//!
//! Every string-valued property of the resource model is an [`Expr`], so a reference to another
//! resource is always a `Ref`/`Fn::GetAtt`/`Fn::Sub` that the validator can see, never a JSON
//! fragment spelled by hand.

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

/// A pseudo parameter that CloudFormation resolves at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    Partition,
    Region,
    AccountId,
    UrlSuffix,
    StackName,
    StackId,
}

impl Pseudo {
    pub const fn name(self) -> &'static str {
        match self {
            Pseudo::Partition => "AWS::Partition",
            Pseudo::Region => "AWS::Region",
            Pseudo::AccountId => "AWS::AccountId",
            Pseudo::UrlSuffix => "AWS::URLSuffix",
            Pseudo::StackName => "AWS::StackName",
            Pseudo::StackId => "AWS::StackId",
        }
    }

    /// Whether `name` is a pseudo parameter (`AWS::...`) that `Ref` and `Fn::Sub` may name.
    pub fn is_pseudo(name: &str) -> bool {
        [
            "AWS::Partition",
            "AWS::Region",
            "AWS::AccountId",
            "AWS::URLSuffix",
            "AWS::StackName",
            "AWS::StackId",
            "AWS::NotificationARNs",
            "AWS::NoValue",
        ]
        .contains(&name)
    }
}

/// A value of a CloudFormation property: a literal or an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A plain string.
    Str(String),
    /// `{"Ref": name}`: a resource's primary value or a parameter's value.
    Ref(String),
    /// `{"Ref": "AWS::..."}`.
    Pseudo(Pseudo),
    /// `{"Fn::GetAtt": [resource, attribute]}`.
    GetAtt(String, String),
    /// `{"Fn::Sub": template}` or `{"Fn::Sub": [template, {var: value}]}`.
    Sub(String, Vec<(String, Expr)>),
    /// `{"Fn::Join": [delimiter, [values]]}`.
    Join(String, Vec<Expr>),
    /// `{"Fn::Select": [index, list]}`.
    Select(u32, Box<Expr>),
    /// `{"Fn::Split": [delimiter, value]}`: a list, used inside `Select`.
    Split(String, Box<Expr>),
    /// `{"Fn::If": [condition, then, else]}`.
    If(String, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// A `Ref` to a resource or parameter.
    pub fn r#ref(name: impl Into<String>) -> Self {
        Expr::Ref(name.into())
    }

    /// `Fn::GetAtt` of a resource's attribute.
    pub fn get_att(resource: impl Into<String>, attribute: impl Into<String>) -> Self {
        Expr::GetAtt(resource.into(), attribute.into())
    }

    /// `Fn::Sub` with no local variables: `${Name}`, `${Name.Attr}` and `${AWS::Region}` resolve
    /// against the template.
    pub fn sub(template: impl Into<String>) -> Self {
        Expr::Sub(template.into(), Vec::new())
    }

    /// `Fn::Sub` with local variables.
    pub fn sub_with(template: impl Into<String>, vars: Vec<(String, Expr)>) -> Self {
        Expr::Sub(template.into(), vars)
    }

    pub fn join(delimiter: impl Into<String>, parts: Vec<Expr>) -> Self {
        Expr::Join(delimiter.into(), parts)
    }

    pub fn select(index: u32, list: Expr) -> Self {
        Expr::Select(index, Box::new(list))
    }

    pub fn split(delimiter: impl Into<String>, value: Expr) -> Self {
        Expr::Split(delimiter.into(), Box::new(value))
    }

    pub fn if_(condition: impl Into<String>, then: Expr, otherwise: Expr) -> Self {
        Expr::If(condition.into(), Box::new(then), Box::new(otherwise))
    }
}

impl From<&str> for Expr {
    fn from(s: &str) -> Self {
        Expr::Str(s.to_owned())
    }
}

impl From<String> for Expr {
    fn from(s: String) -> Self {
        Expr::Str(s)
    }
}

impl From<Pseudo> for Expr {
    fn from(p: Pseudo) -> Self {
        Expr::Pseudo(p)
    }
}

/// One-key map `{key: value}`, the shape of every intrinsic function.
fn single<S: Serializer, V: Serialize + ?Sized>(
    s: S,
    key: &str,
    value: &V,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
}

/// One argument of an intrinsic function's argument list.
enum Arg<'a> {
    Str(&'a str),
    Index(u32),
    Expr(&'a Expr),
    List(&'a [Expr]),
    Vars(&'a [(String, Expr)]),
}

impl Serialize for Arg<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Str(v) => s.serialize_str(v),
            Arg::Index(i) => s.serialize_u32(*i),
            Arg::Expr(e) => e.serialize(s),
            Arg::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in *items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Arg::Vars(vars) => {
                let mut map = s.serialize_map(Some(vars.len()))?;
                for (k, v) in *vars {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expr::Str(v) => s.serialize_str(v),
            Expr::Ref(name) => single(s, "Ref", name),
            Expr::Pseudo(p) => single(s, "Ref", p.name()),
            Expr::GetAtt(r, a) => single(s, "Fn::GetAtt", &[r, a]),
            Expr::Sub(t, vars) if vars.is_empty() => single(s, "Fn::Sub", t),
            Expr::Sub(t, vars) => single(s, "Fn::Sub", &[Arg::Str(t), Arg::Vars(vars)]),
            Expr::Join(d, parts) => single(s, "Fn::Join", &[Arg::Str(d), Arg::List(parts)]),
            Expr::Select(i, list) => single(s, "Fn::Select", &[Arg::Index(*i), Arg::Expr(list)]),
            Expr::Split(d, v) => single(s, "Fn::Split", &[Arg::Str(d), Arg::Expr(v)]),
            Expr::If(c, a, b) => single(s, "Fn::If", &[Arg::Str(c), Arg::Expr(a), Arg::Expr(b)]),
        }
    }
}

/// A CloudFormation condition function, for the template's `Conditions` section.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"Fn::Equals": [a, b]}`.
    Equals(Expr, Expr),
    /// `{"Fn::Not": [condition]}`.
    Not(Box<Condition>),
    /// `{"Condition": name}`: another named condition.
    Named(String),
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Condition::Equals(a, b) => single(s, "Fn::Equals", &[a, b]),
            Condition::Not(c) => single(s, "Fn::Not", &[c.as_ref()]),
            Condition::Named(n) => single(s, "Condition", n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn j(e: &Expr) -> serde_json::Value {
        serde_json::to_value(e).expect("serializes")
    }

    #[test]
    fn literals_are_plain_strings() {
        assert_eq!(j(&"x".into()), json!("x"));
    }

    #[test]
    fn ref_and_pseudo() {
        assert_eq!(j(&Expr::r#ref("Table")), json!({"Ref": "Table"}));
        assert_eq!(
            j(&Pseudo::UrlSuffix.into()),
            json!({"Ref": "AWS::URLSuffix"})
        );
        assert_eq!(
            j(&Pseudo::Partition.into()),
            json!({"Ref": "AWS::Partition"})
        );
        assert_eq!(
            j(&Pseudo::AccountId.into()),
            json!({"Ref": "AWS::AccountId"})
        );
        assert_eq!(
            j(&Pseudo::StackName.into()),
            json!({"Ref": "AWS::StackName"})
        );
        assert_eq!(j(&Pseudo::Region.into()), json!({"Ref": "AWS::Region"}));
    }

    #[test]
    fn get_att_is_a_pair() {
        assert_eq!(
            j(&Expr::get_att("Role", "Arn")),
            json!({"Fn::GetAtt": ["Role", "Arn"]})
        );
    }

    #[test]
    fn sub_short_and_long_form() {
        assert_eq!(
            j(&Expr::sub("a-${AWS::Region}")),
            json!({"Fn::Sub": "a-${AWS::Region}"})
        );
        assert_eq!(
            j(&Expr::sub_with(
                "${X}/${Y}",
                vec![("X".into(), Expr::r#ref("Api")), ("Y".into(), "lit".into()),]
            )),
            json!({"Fn::Sub": ["${X}/${Y}", {"X": {"Ref": "Api"}, "Y": "lit"}]})
        );
    }

    #[test]
    fn join_select_split_if() {
        assert_eq!(
            j(&Expr::join(":", vec!["a".into(), Expr::r#ref("B")])),
            json!({"Fn::Join": [":", ["a", {"Ref": "B"}]]})
        );
        assert_eq!(
            j(&Expr::select(1, Expr::split("/", Expr::r#ref("Arn")))),
            json!({"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "Arn"}]}]})
        );
        assert_eq!(
            j(&Expr::if_("IsProd", "a".into(), "b".into())),
            json!({"Fn::If": ["IsProd", "a", "b"]})
        );
    }

    #[test]
    fn conditions() {
        let c = Condition::Not(Box::new(Condition::Equals(Expr::r#ref("P"), "".into())));
        assert_eq!(
            serde_json::to_value(&c).expect("serializes"),
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]})
        );
        assert_eq!(
            serde_json::to_value(Condition::Named("C".into())).expect("serializes"),
            json!({"Condition": "C"})
        );
    }
}
