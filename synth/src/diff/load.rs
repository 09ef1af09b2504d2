//! The two sides of a diff: a cloud assembly directory (its `manifest.json` names each stack's
//! template file) or one template JSON file, read and checked for the shape `diff` relies on.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::DiffError;

/// The artifact type of a CloudFormation stack in a cloud assembly manifest.
const STACK_ARTIFACT: &str = "aws:cloudformation:stack";
/// The sections whose value must be an object of named entries.
const OBJECT_SECTIONS: [&str; 5] = [
    "Resources",
    "Parameters",
    "Conditions",
    "Mappings",
    "Outputs",
];

/// One stack's template, as read.
#[derive(Debug, Clone)]
pub struct LoadedStack {
    /// The artifact ID, or the file stem of a lone template (`WsstackDev` for
    /// `WsstackDev.template.json`).
    pub id: String,
    /// The stack name the manifest gives, if any.
    pub stack_name: Option<String>,
    /// The template, a JSON object whose sections have been checked.
    pub template: Value,
}

impl LoadedStack {
    /// A stack with an empty template: the other side of a stack added or removed.
    pub fn empty() -> Self {
        LoadedStack {
            id: String::new(),
            stack_name: None,
            template: Value::Object(Map::new()),
        }
    }
}

/// One side of the diff.
#[derive(Debug, Clone)]
pub enum Side {
    /// A cloud assembly: its stacks, sorted by artifact ID.
    Assembly(Vec<LoadedStack>),
    /// A single template file.
    Template(LoadedStack),
}

impl Side {
    /// The stacks of this side: an assembly's, sorted by artifact ID, or the lone template.
    pub fn stacks(&self) -> &[LoadedStack] {
        match self {
            Side::Assembly(s) => s,
            Side::Template(t) => std::slice::from_ref(t),
        }
    }
}

/// A missing `path` is [`DiffError::Missing`]; any other failure to read it [`DiffError::Io`].
fn io_error(path: &Path, source: std::io::Error) -> DiffError {
    match source.kind() {
        std::io::ErrorKind::NotFound => DiffError::Missing {
            path: path.to_owned(),
        },
        _ => DiffError::Io {
            path: path.to_owned(),
            source,
        },
    }
}

/// Reads `path`: a directory is an assembly, a file a template.
pub fn load(path: &Path) -> Result<Side, DiffError> {
    let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
    if meta.is_dir() {
        load_assembly(path).map(Side::Assembly)
    } else {
        let template = load_template(path)?;
        Ok(Side::Template(LoadedStack {
            id: template_stem(path),
            stack_name: None,
            template,
        }))
    }
}

/// `WsstackDev.template.json` -> `WsstackDev`; `foo.json` -> `foo`.
fn template_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".json").unwrap_or(&name);
    name.strip_suffix(".template").unwrap_or(name).to_owned()
}

/// Reads a JSON file.
fn read_json(path: &Path) -> Result<Value, DiffError> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    serde_json::from_slice(&bytes).map_err(|source| {
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml {
            DiffError::invalid(
                path,
                "a YAML template is not read: diff the .template.json that synth writes beside it",
            )
        } else {
            DiffError::Json {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Reads a template and checks its sections: an object, with `Resources` an object of
/// resources that each have a string `Type`.
pub fn load_template(path: &Path) -> Result<Value, DiffError> {
    let template = read_json(path)?;
    check_template(path, &template)?;
    Ok(template)
}

fn check_template(path: &Path, template: &Value) -> Result<(), DiffError> {
    let Some(t) = template.as_object() else {
        return Err(DiffError::invalid(path, "a template is a JSON object"));
    };
    let Some(resources) = t.get("Resources") else {
        return Err(DiffError::invalid(
            path,
            "not a CloudFormation template: it has no `Resources`",
        ));
    };
    for section in OBJECT_SECTIONS {
        if let Some(v) = t.get(section)
            && !v.is_object()
        {
            return Err(DiffError::invalid(
                path,
                format!("`{section}` is not an object"),
            ));
        }
    }
    for (id, r) in resources.as_object().into_iter().flatten() {
        if r.get("Type").and_then(Value::as_str).is_none() {
            return Err(DiffError::invalid(
                path,
                format!("`Resources.{id}` has no string `Type`"),
            ));
        }
    }
    Ok(())
}

/// Reads an assembly's manifest and every stack template it names.
fn load_assembly(dir: &Path) -> Result<Vec<LoadedStack>, DiffError> {
    let manifest_path = dir.join("manifest.json");
    if !manifest_path.exists() {
        return Err(DiffError::invalid(
            dir,
            "a directory without manifest.json is not a cloud assembly (synth writes one into cdk.out/)",
        ));
    }
    let manifest = read_json(&manifest_path)?;
    let Some(artifacts) = manifest.get("artifacts").and_then(Value::as_object) else {
        return Err(DiffError::invalid(
            &manifest_path,
            "a cloud assembly manifest has an `artifacts` object",
        ));
    };
    let mut stacks = BTreeMap::new();
    for (id, artifact) in artifacts {
        if artifact.get("type").and_then(Value::as_str) != Some(STACK_ARTIFACT) {
            continue;
        }
        let props = artifact.get("properties");
        let Some(file) = props
            .and_then(|p| p.get("templateFile"))
            .and_then(Value::as_str)
        else {
            return Err(DiffError::invalid(
                &manifest_path,
                format!("`artifacts.{id}.properties.templateFile` is missing or not a string"),
            ));
        };
        let template = load_template(&dir.join(file))?;
        let stack_name = props
            .and_then(|p| p.get("stackName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        stacks.insert(
            id.clone(),
            LoadedStack {
                id: id.clone(),
                stack_name,
                template,
            },
        );
    }
    Ok(stacks.into_values().collect())
}

/// Pairs the stacks of two sides: by artifact ID, except that a lone template pairs with a
/// lone template, or with the only stack of an assembly, whatever their names. Sorted by ID;
/// `None` on the side a stack is missing from.
pub fn pair<'a>(
    old: &'a Side,
    new: &'a Side,
) -> Vec<(Option<&'a LoadedStack>, Option<&'a LoadedStack>)> {
    let lone = matches!(old, Side::Template(_)) || matches!(new, Side::Template(_));
    if lone && old.stacks().len() == 1 && new.stacks().len() == 1 {
        return vec![(old.stacks().first(), new.stacks().first())];
    }
    let mut by_id: BTreeMap<&str, (Option<&LoadedStack>, Option<&LoadedStack>)> = BTreeMap::new();
    for s in old.stacks() {
        by_id.entry(&s.id).or_default().0 = Some(s);
    }
    for s in new.stacks() {
        by_id.entry(&s.id).or_default().1 = Some(s);
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn template_stems() {
        assert_eq!(
            template_stem(Path::new("a/WsstackDev.template.json")),
            "WsstackDev"
        );
        assert_eq!(template_stem(Path::new("x.json")), "x");
    }

    #[test]
    fn malformed_inputs_name_the_file_and_the_fault() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let e = |p: &Path| load(p).expect_err("refused").to_string();
        let missing = d.join("nope.json");
        assert_eq!(
            e(&missing),
            format!("{}: no such file or directory", missing.display())
        );
        let bad = write(d, "bad.json", "{\"Resources\": ");
        assert!(e(&bad).starts_with(&format!("{}: malformed JSON: EOF", bad.display())));
        let yaml = write(d, "t.template.yaml", "Resources: {}\n");
        assert!(e(&yaml).ends_with("diff the .template.json that synth writes beside it"));
        let list = write(d, "list.json", "[]");
        assert!(e(&list).ends_with("a template is a JSON object"));
        let none = write(d, "none.json", "{}");
        assert!(e(&none).ends_with("it has no `Resources`"));
        let untyped = write(d, "untyped.json", r#"{"Resources": {"A": {}}}"#);
        assert!(e(&untyped).ends_with("`Resources.A` has no string `Type`"));
        let outputs = write(d, "o.json", r#"{"Resources": {}, "Outputs": []}"#);
        assert!(e(&outputs).ends_with("`Outputs` is not an object"));
        assert!(e(d).contains("without manifest.json is not a cloud assembly"));
        write(
            d,
            "manifest.json",
            r#"{"artifacts": {"S": {"type": "aws:cloudformation:stack"}}}"#,
        );
        assert!(e(d).ends_with("`artifacts.S.properties.templateFile` is missing or not a string"));
    }
}
