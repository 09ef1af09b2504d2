//! wsstack synth: typed Rust in, CloudFormation and a CDK cloud assembly out.
//!
//! - [`cfn`]: a model of CloudFormation (templates, resource types, intrinsics, validation),
//!   independent of this project.
//! - [`stage`]: the per-environment settings read from `stages/*.toml` (the `wsstack-stage`
//!   crate, which the local gateway reads too).
//! - [`stack`]: the WebSocket API stack, described with the model from a stage and the route
//!   table in `wsstack-routes`.
//! - [`assets`]: the handlers' zips (or labelled stand-ins), hashed by content.
//! - [`assembly`]: the cloud assembly written to `cdk.out/`, atomically.
//! - [`account_setup`]: the one-time account setup template (API Gateway's CloudWatch role).
//! - [`diff`]: `synth diff`, what deploying one assembly or template over another changes.
//! - [`review`]: `synth review`, a template as plain text a reviewer reads in a minute.

pub mod account_setup;
pub mod assembly;
pub mod assets;
pub mod cfn;
pub mod diff;
pub mod review;
pub mod stack;
pub use wsstack_stage as stage;
