//! The CDK cloud assembly: `cdk.out/` with `manifest.json`, each stack's template (JSON and a
//! YAML copy), its asset manifest and the asset files, as `cdk deploy --app cdk.out` reads them.
//!
//! Written into a temporary sibling folder and swapped in at the end, so a failed synth leaves
//! the previous assembly intact. Nothing in it depends on the clock or the machine: two runs
//! give byte-identical files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::assets::{AssetContent, AssetSource, Assets};
use crate::cfn::Template;
use crate::stack::{self, StackError};
use crate::stage::Stage;
use crate::stage::manifest::Manifest;

/// The cloud assembly schema version written; what `aws-cdk` CLI 2.1148 reads
/// (`@aws-cdk/cloud-assembly-schema` 55).
pub const SCHEMA_VERSION: &str = "55.0.0";
/// The qualifier of the default CDK bootstrap stack.
pub const BOOTSTRAP_QUALIFIER: &str = "hnb659fds";
/// The bootstrap stack version whose roles and bucket this assembly uses.
pub const BOOTSTRAP_VERSION: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("--account `{0}` is not an AWS account ID (12 digits)")]
    InvalidAccount(String),
}

/// Where the stacks are pinned to deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub account: Option<String>,
    pub region: Option<String>,
}

impl Environment {
    /// `aws://{account}/{region}`, with `unknown-account`/`unknown-region` for an
    /// environment-agnostic stack (resolved from the deploying credentials).
    pub fn uri(&self) -> String {
        format!(
            "aws://{}/{}",
            self.account.as_deref().unwrap_or("unknown-account"),
            self.region.as_deref().unwrap_or("unknown-region")
        )
    }
}

/// One synthesized stack, ready to be written.
#[derive(Debug, Clone)]
pub struct StackArtifact {
    /// The artifact ID and display name, e.g. `WsstackDev`.
    pub id: String,
    pub stage: Stage,
    pub environment: Environment,
    pub template: Template,
    /// The code the stack's functions run: the handlers', and the example backend's where the
    /// stage turns it on.
    pub assets: Assets,
}

/// Builds every stage's stack. `pin` overrides the stage files' account and region.
pub fn synthesize(
    stages: &[Stage],
    manifest: &Manifest,
    source: &AssetSource,
    pin: &Environment,
) -> Result<Vec<StackArtifact>, AssemblyError> {
    if let Some(a) = &pin.account
        && !crate::stage::is_account_id(a)
    {
        return Err(AssemblyError::InvalidAccount(a.clone()));
    }
    let needs_example = stages.iter().any(|s| s.example_backend.is_some());
    let assets = Assets::resolve(source, needs_example)?;
    stages
        .iter()
        .map(|stage| {
            // Only the stages that run the example carry (and upload) its zip.
            let assets = Assets {
                handlers: assets.handlers.clone(),
                example_backend: assets
                    .example_backend
                    .clone()
                    .filter(|_| stage.example_backend.is_some()),
            };
            let template = stack::build(stage, manifest, &assets)?;
            Ok(StackArtifact {
                id: artifact_id(&stage.stack_name),
                stage: stage.clone(),
                environment: Environment {
                    account: pin.account.clone().or_else(|| stage.account.clone()),
                    region: pin.region.clone().or_else(|| stage.region.clone()),
                },
                template,
                assets,
            })
        })
        .collect()
}

/// `wsstack-dev` -> `WsstackDev`: the CDK-style artifact ID of a stack.
pub fn artifact_id(stack_name: &str) -> String {
    stack_name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The files of an assembly, by path relative to its root.
#[derive(Debug, Default)]
pub struct Files {
    pub files: BTreeMap<String, FileContent>,
}

#[derive(Debug)]
pub enum FileContent {
    Bytes(Vec<u8>),
    /// Copied from this path.
    CopyOf(PathBuf),
}

/// Renders the assembly's files in memory (assets stay on disk until written).
pub fn render(stacks: &[StackArtifact]) -> Result<Files, AssemblyError> {
    let mut out = Files::default();
    let mut artifacts = BTreeMap::new();

    for s in stacks {
        let (template_json, template_yaml) = render_template(&s.template, &s.id)?;
        let template_file = format!("{}.template.json", s.id);
        let template_hash = hex::encode(Sha256::digest(&template_json));
        let assets_file = format!("{}.assets.json", s.id);

        let asset_manifest = asset_manifest(s, &template_file, &template_hash);
        // Stages share their assets (every stage the handlers' zip): one file each in the
        // assembly.
        for (_, a) in s.assets.all() {
            out.files
                .entry(a.file_name())
                .or_insert_with(|| match &a.content {
                    AssetContent::File(p) => FileContent::CopyOf(p.clone()),
                    AssetContent::StandIn(bytes) => FileContent::Bytes(bytes.clone()),
                });
        }
        out.files
            .insert(template_file.clone(), FileContent::Bytes(template_json));
        out.files.insert(
            format!("{}.template.yaml", s.id),
            FileContent::Bytes(template_yaml),
        );
        out.files.insert(
            assets_file.clone(),
            FileContent::Bytes(to_json(&asset_manifest, &assets_file)?),
        );

        let assets_id = format!("{}.assets", s.id);
        artifacts.insert(
            assets_id.clone(),
            asset_manifest_artifact(&s.id, assets_file),
        );
        artifacts.insert(
            s.id.clone(),
            stack_artifact(s, template_file, &template_hash, assets_id),
        );
    }

    let manifest = AssemblyManifest {
        version: SCHEMA_VERSION,
        artifacts,
    };
    out.files.insert(
        "manifest.json".to_owned(),
        FileContent::Bytes(to_json(&manifest, "manifest.json")?),
    );
    // The CDK writes this marker with the schema version; tools look for it.
    out.files.insert(
        "cdk.out".to_owned(),
        FileContent::Bytes(to_json(
            &serde_json::json!({"version": SCHEMA_VERSION}),
            "cdk.out",
        )?),
    );
    Ok(out)
}

/// A stack's asset manifest: the handlers' zip (the example backend's too, where the stage runs
/// it) and the template itself.
fn asset_manifest(s: &StackArtifact, template_file: &str, template_hash: &str) -> AssetManifest {
    let mut manifest = AssetManifest {
        version: SCHEMA_VERSION,
        files: BTreeMap::new(),
        docker_images: BTreeMap::new(),
    };
    for (what, a) in s.assets.all() {
        // Two stand-ins are one file: the first name stays.
        manifest.files.entry(a.hash.clone()).or_insert_with(|| {
            file_asset(
                &format!("{} {what} Code", s.id),
                &a.file_name(),
                &a.object_key(),
                &s.environment,
            )
        });
    }
    // The template is an asset too: `cdk deploy` uploads it, which lifts CloudFormation's
    // 51,200-byte limit on templates passed inline.
    manifest.files.insert(
        template_hash.to_owned(),
        file_asset(
            &format!("{} Template", s.id),
            template_file,
            &format!("{template_hash}.json"),
            &s.environment,
        ),
    );
    manifest
}

/// The manifest's artifact for a stack's asset manifest file.
fn asset_manifest_artifact(stack_id: &str, assets_file: String) -> Artifact {
    Artifact {
        type_: "cdk:asset-manifest",
        environment: None,
        properties: ArtifactProperties::Assets(AssetManifestProperties {
            file: assets_file,
            requires_bootstrap_stack_version: BOOTSTRAP_VERSION,
            bootstrap_stack_version_ssm_parameter: bootstrap_version_parameter(),
        }),
        dependencies: Vec::new(),
        metadata: BTreeMap::new(),
        display_name: Some(format!("{stack_id} Assets")),
    }
}

fn role_arn(kind: &str) -> String {
    format!(
        "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-{BOOTSTRAP_QUALIFIER}-{kind}-role-${{AWS::AccountId}}-${{AWS::Region}}"
    )
}

fn bootstrap_version_parameter() -> String {
    format!("/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version")
}

/// The destination key the CDK uses: `{account}-{region}`, with `current_account` and
/// `current_region` placeholders for an environment-agnostic stack.
fn destination_key(env: &Environment) -> String {
    format!(
        "{}-{}",
        env.account.as_deref().unwrap_or("current_account"),
        env.region.as_deref().unwrap_or("current_region")
    )
}

fn file_asset(display_name: &str, path: &str, object_key: &str, env: &Environment) -> FileAsset {
    let mut destinations = BTreeMap::new();
    destinations.insert(
        destination_key(env),
        FileDestination {
            bucket_name: crate::stack::BOOTSTRAP_BUCKET.to_owned(),
            object_key: object_key.to_owned(),
            region: env.region.clone(),
            assume_role_arn: role_arn("file-publishing"),
        },
    );
    FileAsset {
        display_name: display_name.to_owned(),
        source: FileSource {
            path: path.to_owned(),
            packaging: "file",
        },
        destinations,
    }
}

fn stack_artifact(
    s: &StackArtifact,
    template_file: String,
    template_hash: &str,
    assets_id: String,
) -> Artifact {
    // Resource paths for `cdk` messages: the CDK maps a construct path to each logical ID.
    let mut metadata = BTreeMap::new();
    for (logical_id, _) in &s.template.resources {
        metadata.insert(
            format!("/{}/{}", s.id, logical_id),
            vec![MetadataEntry {
                type_: "aws:cdk:logicalId",
                data: logical_id.clone(),
            }],
        );
    }
    if s.assets.is_stand_in() {
        metadata.insert(
            format!("/{}", s.id),
            vec![MetadataEntry {
                type_: "aws:cdk:warning",
                data: "synthesized with STAND-IN handler code that refuses to run: build with `make handlers` and synth again before deploying".to_owned(),
            }],
        );
    }
    Artifact {
        type_: "aws:cloudformation:stack",
        environment: Some(s.environment.uri()),
        properties: ArtifactProperties::Stack(StackProperties {
            template_file,
            stack_name: s.stage.stack_name.clone(),
            termination_protection: s.stage.termination_protection,
            validate_on_synth: false,
            assume_role_arn: role_arn("deploy"),
            cloud_formation_execution_role_arn: role_arn("cfn-exec"),
            stack_template_asset_object_url: format!(
                "s3://{}/{template_hash}.json",
                crate::stack::BOOTSTRAP_BUCKET
            ),
            requires_bootstrap_stack_version: BOOTSTRAP_VERSION,
            bootstrap_stack_version_ssm_parameter: bootstrap_version_parameter(),
            additional_dependencies: vec![assets_id.clone()],
            lookup_role: LookupRole {
                arn: role_arn("lookup"),
                requires_bootstrap_stack_version: 8,
                bootstrap_stack_version_ssm_parameter: bootstrap_version_parameter(),
            },
        }),
        dependencies: vec![assets_id],
        metadata,
        display_name: Some(s.id.clone()),
    }
}

/// A template as pretty JSON and as YAML; `id` names it in errors.
pub fn render_template(
    template: &crate::cfn::Template,
    id: &str,
) -> Result<(Vec<u8>, Vec<u8>), AssemblyError> {
    let json = to_json(template, &format!("{id} template"))?;
    let yaml = serde_yaml_ng::to_string(template).map_err(|e| AssemblyError::Serialize {
        what: format!("{id} template as YAML"),
        source: Box::new(e),
    })?;
    Ok((json, yaml.into_bytes()))
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, AssemblyError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| AssemblyError::Serialize {
        what: what.to_owned(),
        source: Box::new(e),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes the files to `out` atomically: into a temporary sibling, then swapped in.
pub fn write(files: &Files, out: &Path) -> Result<(), AssemblyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AssemblyError::Io { path, source }
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = out
        .file_name()
        .map_or_else(|| "cdk.out".into(), |n| n.to_string_lossy().into_owned());
    let staging = parent.join(format!(".{name}.synth-{}", std::process::id()));
    let previous = parent.join(format!(".{name}.previous-{}", std::process::id()));

    let result = (|| {
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        for (rel, content) in &files.files {
            let path = staging.join(rel);
            match content {
                FileContent::Bytes(b) => std::fs::write(&path, b).map_err(io(&path))?,
                // A copy, not a hard link: the next `make handlers` rewrites the zip in place,
                // which would change an asset whose name promises its old content.
                FileContent::CopyOf(src) => {
                    std::fs::copy(src, &path).map_err(io(src))?;
                }
            }
        }
        // Swap: the old assembly moves aside only once the new one is complete.
        let had_previous = out.exists();
        if had_previous {
            std::fs::rename(out, &previous).map_err(io(out))?;
        }
        if let Err(e) = std::fs::rename(&staging, out) {
            if had_previous {
                let _ = std::fs::rename(&previous, out);
            }
            return Err(io(out)(e));
        }
        if had_previous {
            std::fs::remove_dir_all(&previous).map_err(io(&previous))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

// ---- The manifest formats (cloud-assembly schema 55), as far as this assembly uses them.

#[derive(Serialize)]
struct AssemblyManifest {
    version: &'static str,
    artifacts: BTreeMap<String, Artifact>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    properties: ArtifactProperties,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, Vec<MetadataEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ArtifactProperties {
    Stack(StackProperties),
    Assets(AssetManifestProperties),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StackProperties {
    template_file: String,
    stack_name: String,
    termination_protection: bool,
    validate_on_synth: bool,
    assume_role_arn: String,
    cloud_formation_execution_role_arn: String,
    stack_template_asset_object_url: String,
    requires_bootstrap_stack_version: u32,
    bootstrap_stack_version_ssm_parameter: String,
    additional_dependencies: Vec<String>,
    lookup_role: LookupRole,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LookupRole {
    arn: String,
    requires_bootstrap_stack_version: u32,
    bootstrap_stack_version_ssm_parameter: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssetManifestProperties {
    file: String,
    requires_bootstrap_stack_version: u32,
    bootstrap_stack_version_ssm_parameter: String,
}

#[derive(Serialize)]
struct MetadataEntry {
    #[serde(rename = "type")]
    type_: &'static str,
    data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssetManifest {
    version: &'static str,
    files: BTreeMap<String, FileAsset>,
    docker_images: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileAsset {
    display_name: String,
    source: FileSource,
    destinations: BTreeMap<String, FileDestination>,
}

#[derive(Serialize)]
struct FileSource {
    path: String,
    packaging: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileDestination {
    bucket_name: String,
    object_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    assume_role_arn: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_ids_are_pascal_case() {
        assert_eq!(artifact_id("wsstack-dev"), "WsstackDev");
        assert_eq!(artifact_id("my-chat-eu-prod2"), "MyChatEuProd2");
    }

    #[test]
    fn environment_uri() {
        assert_eq!(
            Environment::default().uri(),
            "aws://unknown-account/unknown-region"
        );
        let pinned = Environment {
            account: Some("123456789012".into()),
            region: Some("eu-west-1".into()),
        };
        assert_eq!(pinned.uri(), "aws://123456789012/eu-west-1");
        assert_eq!(destination_key(&pinned), "123456789012-eu-west-1");
        assert_eq!(
            destination_key(&Environment::default()),
            "current_account-current_region"
        );
    }
}
