//! The functions' code: the one zip of the handlers' `bootstrap` binary, built by
//! `make handlers`, hashed by content and shared by every function of every stage. Each
//! function's `Handler` property names its route handler; the binary dispatches on it. Stages
//! with `[example_backend] enabled = true` also run the example backend's `job-backend` binary,
//! a zip of its own that `make handlers` builds too ([`EXAMPLE_BACKEND_BINARY`]).
//!
//! A template-only synth (tests, CI, a first look) cannot build arm64 Lambda zips. For that,
//! [`AssetSource::StandIn`] makes a small, clearly labelled zip whose `bootstrap` refuses to
//! run, so a stand-in that got deployed by mistake fails loudly instead of serving.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where `cargo lambda build --output-format zip` writes the binary's zip, relative to the
/// workspace root: `{dir}/bootstrap/bootstrap.zip`.
pub const DEFAULT_LAMBDA_DIR: &str = "target/lambda";

/// The handlers crate's one Lambda binary, which every function runs.
pub const BINARY: &str = "bootstrap";

/// The example backend service's binary (`examples/job-backend`), in the stages that turn it
/// on: `{dir}/job-backend/bootstrap.zip`.
pub const EXAMPLE_BACKEND_BINARY: &str = "job-backend";

/// The make target that builds the zip; named in errors.
pub const BUILD_TARGET: &str = "make handlers";

/// Where the functions' code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetSource {
    /// The real zip under this folder (`{dir}/bootstrap/bootstrap.zip`).
    Built(PathBuf),
    /// A labelled stand-in that cannot run: for synthesizing templates without building.
    StandIn,
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("the Lambda zip {} does not exist: build it with `{BUILD_TARGET}` first (or pass --stand-in-assets to synthesize templates without code)", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read the Lambda zip {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file asset: the handlers' deployment package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// SHA-256 of the zip, lowercase hex: the asset ID and the S3 object key's stem.
    pub hash: String,
    pub content: AssetContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetContent {
    /// A zip on disk, copied into the assembly.
    File(PathBuf),
    /// A generated stand-in zip.
    StandIn(Vec<u8>),
}

impl Asset {
    /// The file name inside `cdk.out`, as the CDK names file assets.
    pub fn file_name(&self) -> String {
        format!("asset.{}.zip", self.hash)
    }

    /// The S3 object key in the assets bucket.
    pub fn object_key(&self) -> String {
        format!("{}.zip", self.hash)
    }

    pub fn is_stand_in(&self) -> bool {
        matches!(self.content, AssetContent::StandIn(_))
    }
}

/// The code of a stack's functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// The handlers' zip, which every handler's function runs.
    pub handlers: Asset,
    /// The example backend's zip, where a stage turns the example on (`[example_backend]`).
    pub example_backend: Option<Asset>,
}

impl Assets {
    /// Finds and hashes the handlers' zip, and the example backend's where `example_backend`
    /// (a stage turns it on: only then must it have been built).
    pub fn resolve(source: &AssetSource, example_backend: bool) -> Result<Assets, AssetError> {
        Ok(Assets {
            handlers: resolve(source)?,
            example_backend: example_backend
                .then(|| resolve_binary(source, EXAMPLE_BACKEND_BINARY))
                .transpose()?,
        })
    }

    /// Every code asset with what it is (`Handlers`, `Example Backend`), as the asset manifest
    /// names them.
    pub fn all(&self) -> Vec<(&'static str, &Asset)> {
        let mut all = vec![("Handlers", &self.handlers)];
        all.extend(self.example_backend.iter().map(|a| ("Example Backend", a)));
        all
    }

    pub fn is_stand_in(&self) -> bool {
        self.all().iter().any(|(_, a)| a.is_stand_in())
    }
}

/// Finds and hashes the handlers' asset.
pub fn resolve(source: &AssetSource) -> Result<Asset, AssetError> {
    resolve_binary(source, BINARY)
}

/// Finds and hashes the zip of `binary` (`{dir}/{binary}/bootstrap.zip`, where cargo lambda
/// writes it); the stand-in is the same for every binary.
pub fn resolve_binary(source: &AssetSource, binary: &str) -> Result<Asset, AssetError> {
    match source {
        AssetSource::StandIn => {
            let zip = stand_in_zip();
            Ok(Asset {
                hash: hex::encode(Sha256::digest(&zip)),
                content: AssetContent::StandIn(zip),
            })
        }
        AssetSource::Built(dir) => {
            let path = binary_zip_path(dir, binary);
            let hash = hash_file(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    AssetError::Missing { path: path.clone() }
                } else {
                    AssetError::Read {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            Ok(Asset {
                hash,
                content: AssetContent::File(path),
            })
        }
    }
}

/// `{dir}/bootstrap/bootstrap.zip`.
pub fn zip_path(dir: &Path) -> PathBuf {
    binary_zip_path(dir, BINARY)
}

/// `{dir}/{binary}/bootstrap.zip`: cargo lambda names the zip's only file `bootstrap`, as the
/// `provided.al2023` runtime runs it, whatever the binary's name.
pub fn binary_zip_path(dir: &Path, binary: &str) -> PathBuf {
    dir.join(binary).join("bootstrap.zip")
}

/// SHA-256 of a file, streamed so a large zip does not sit in memory.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The `bootstrap` of a stand-in: says what it is, and which handler it stands in for (Lambda
/// sets `_HANDLER` from the function's `Handler`), and exits non-zero.
fn stand_in_bootstrap() -> String {
    format!(
        "#!/bin/sh\n\
         # wsstack STAND-IN asset, written by `synth --stand-in-assets`.\n\
         echo \"wsstack: this function runs a STAND-IN, not the ${{_HANDLER:-unknown}} handler: build the handlers with \\`{BUILD_TARGET}\\`, synth again and redeploy\" >&2\n\
         exit 1\n"
    )
}

/// A deterministic zip holding the stand-in `bootstrap` (stored, fixed timestamp, mode 0755).
pub fn stand_in_zip() -> Vec<u8> {
    zip_stored("bootstrap", stand_in_bootstrap().as_bytes())
}

/// A one-file zip with no compression. Enough for a stand-in; avoids a zip dependency.
fn zip_stored(name: &str, data: &[u8]) -> Vec<u8> {
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    let crc = crc32(data);
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);

    let mut out = Vec::with_capacity(data.len() + 128);
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra length
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);

    let central_start = u32::try_from(out.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out.extend_from_slice(&0u16.to_le_bytes()); // disk
    out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    out.extend_from_slice(&(0o100_755u32 << 16).to_le_bytes()); // regular file, rwxr-xr-x
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let central_len = u32::try_from(out.len()).unwrap_or(u32::MAX) - central_start;

    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&central_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), as zip uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn the_stand_in_is_deterministic_and_labelled() {
        let a = resolve(&AssetSource::StandIn).expect("stand-in");
        let b = resolve(&AssetSource::StandIn).expect("stand-in");
        assert_eq!(a, b);
        assert!(a.is_stand_in());
        assert_eq!(a.file_name(), format!("asset.{}.zip", a.hash));
        assert_eq!(a.object_key(), format!("{}.zip", a.hash));
        let script = stand_in_bootstrap();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(script.contains("STAND-IN"), "{script}");
        assert!(script.contains("${_HANDLER:-unknown} handler"), "{script}");
        assert!(script.contains("make handlers"), "{script}");
        assert!(script.ends_with("exit 1\n"), "{script}");
    }

    #[test]
    fn the_stand_in_refuses_to_run_naming_its_handler() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, stand_in_bootstrap()).expect("write");
        let out = std::process::Command::new("sh")
            .arg(&path)
            .env("_HANDLER", "send-message")
            .output()
            .expect("sh runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err,
            "wsstack: this function runs a STAND-IN, not the send-message handler: build the \
             handlers with `make handlers`, synth again and redeploy\n"
        );
    }

    #[test]
    fn a_missing_zip_names_the_file_and_the_make_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = resolve(&AssetSource::Built(dir.path().to_owned())).expect_err("no zip");
        let msg = e.to_string();
        assert!(
            msg.contains("bootstrap/bootstrap.zip does not exist"),
            "{msg}"
        );
        assert!(msg.contains("make handlers"), "{msg}");
    }

    #[test]
    fn built_zip_is_hashed_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = zip_path(dir.path());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"abc").expect("write");
        let a = resolve(&AssetSource::Built(dir.path().to_owned())).expect("zip");
        // sha256("abc")
        assert_eq!(
            a.hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(a.content, AssetContent::File(path));
    }

    /// The example backend's zip is its own, where cargo lambda writes it; a missing one is
    /// named with the make target that builds it.
    #[test]
    fn the_example_backend_zip_is_its_binarys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = AssetSource::Built(dir.path().to_owned());
        let msg = resolve_binary(&source, EXAMPLE_BACKEND_BINARY)
            .expect_err("no zip")
            .to_string();
        assert!(
            msg.contains("job-backend/bootstrap.zip does not exist"),
            "{msg}"
        );
        assert!(msg.contains("make handlers"), "{msg}");
        let path = binary_zip_path(dir.path(), EXAMPLE_BACKEND_BINARY);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"abc").expect("write");
        let a = resolve_binary(&source, EXAMPLE_BACKEND_BINARY).expect("zip");
        assert_eq!(a.content, AssetContent::File(path));
        assert_eq!(
            resolve_binary(&AssetSource::StandIn, EXAMPLE_BACKEND_BINARY).expect("stand-in"),
            resolve(&AssetSource::StandIn).expect("stand-in")
        );
    }
}
