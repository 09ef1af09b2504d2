//! `synth`: writes the CloudFormation templates and CDK cloud assembly of the wsstack
//! WebSocket API, one stack per stage, without Node or the CDK at synth time.
//!
//! Subcommands: `build` (the default: `synth` with no subcommand builds), `needs` (what a
//! stage asks of the account), `account-setup` (the one-time account template), `diff`
//! (what deploying one assembly over another changes) and `review` (a template as text a
//! reviewer reads).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use wsstack_synth::account_setup;
use wsstack_synth::assembly::{self, Environment};
use wsstack_synth::assets::{AssetSource, DEFAULT_LAMBDA_DIR};
use wsstack_synth::diff;
use wsstack_synth::review;
use wsstack_synth::stage::manifest;
use wsstack_synth::stage::{self, DEFAULT_STAGES_DIR, Stage};

/// Synthesize the wsstack WebSocket API into a CDK cloud assembly (cdk.out).
///
/// Reads the stage files (stages/dev.toml, stages/prod.toml, ...), builds one CloudFormation
/// stack per stage (a DynamoDB connections table, one Lambda function per route with its own
/// least-privilege role and log group, the API Gateway WebSocket API and its stage), checks
/// every template, and writes them with their asset manifests. Deploy the result with
/// `aws cloudformation deploy` (see `make deploy`) or `cdk deploy --app cdk.out`.
///
/// Without a subcommand, `synth` is `synth build` with the same flags.
#[derive(Debug, Parser)]
#[command(
    name = "synth",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  synth                          every stage, the real handlers' zip (build it with `make handlers`)\n  synth build --stage prod       only stages/prod.toml (`synth --stage prod` is the same)\n  synth --stand-in-assets        templates only, without building the handlers\n  synth --account 123456789012 --region eu-west-1   pin the stacks to one environment\n  synth needs --stage prod       what deploying prod asks of the account, as JSON\n  synth account-setup target/account-setup          the one-time account setup template\n  synth diff old/cdk.out cdk.out  what deploying cdk.out over old/cdk.out changes\n  synth review cdk.out           every stack's resources, IAM grants and outputs, as text"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The flags of `synth build`, for `synth` without a subcommand.
    #[command(flatten)]
    build: BuildArgs,

    /// Deprecated spelling of `synth account-setup DIR`.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with_all = ["stage", "all"])]
    account_setup: Option<PathBuf>,

    /// Deprecated spelling of `synth needs`.
    #[arg(long, hide = true, conflicts_with = "account_setup")]
    account_needs: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the cloud assembly (cdk.out) of every stage, or of the stages named (the default).
    Build(BuildArgs),
    /// Print one JSON line per stage with what deploying it asks of the account (total
    /// reserved concurrency, access logs): the input of `scripts/deploy.py check`, computed by
    /// the same stage resolution as the templates. Writes nothing.
    Needs(StageSelection),
    /// Write the one-time account setup template (API Gateway's CloudWatch Logs role, which
    /// stages with access logs need) into DIR, as WsstackAccountSetup.template.json and .yaml.
    /// `make account-setup` deploys it.
    AccountSetup(AccountSetupArgs),
    /// Show what deploying NEW over OLD changes, stack by stack: resources added, removed and
    /// changed (the property paths, and whether the change replaces the live resource), IAM
    /// grants and revocations, Outputs and Parameters. Exit status: 0 and no output when
    /// nothing changed, 1 when something did, 2 on an error. `make diff BASE=<git ref>` diffs
    /// a git ref's synth output against the working tree's.
    Diff(DiffArgs),
    /// Print a template as text a reviewer reads in a minute: resources grouped by type with
    /// their key settings, every IAM grant as one `role: action on resource` line, parameters
    /// and outputs. The per-stage review snapshots (synth/tests/snapshots/review__*.snap) are
    /// this text.
    Review(ReviewArgs),
}

#[derive(Debug, Args)]
struct ReviewArgs {
    /// A cloud assembly directory (cdk.out), every stack in it, or one template JSON file.
    #[arg(value_name = "TEMPLATE|ASSEMBLY")]
    path: PathBuf,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The deployed (or base) side: a cloud assembly directory (cdk.out) or one template JSON
    /// file.
    #[arg(value_name = "OLD")]
    old: PathBuf,

    /// The side to deploy: a cloud assembly directory or one template JSON file.
    #[arg(value_name = "NEW")]
    new: PathBuf,

    /// Plain text for a terminal, or Markdown for a pull-request comment.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    format: DiffFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DiffFormat {
    Text,
    Markdown,
}

/// Which stages to read.
#[derive(Debug, Args)]
struct StageSelection {
    /// Only this stage (the name of a file in the stages folder, without .toml). Repeat for
    /// several. Without --stage, every stage is read.
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    stage: Vec<String>,

    /// Every stage in the stages folder (the default).
    #[arg(long)]
    all: bool,

    /// The folder of stage files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STAGES_DIR)]
    stages_dir: PathBuf,
}

#[derive(Debug, Args)]
struct BuildArgs {
    #[command(flatten)]
    stages: StageSelection,

    /// The app manifest (forwarded actions; docs/manifest.md). Default: wsstack.toml in the
    /// current folder, or the shipped manifest built into synth where there is none.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,

    /// Where to write the cloud assembly. It is replaced as a whole, and only once synth has
    /// succeeded.
    #[arg(long, value_name = "DIR", default_value = "cdk.out")]
    out: PathBuf,

    /// Where `make handlers` leaves the handlers' zip ({dir}/bootstrap/bootstrap.zip).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LAMBDA_DIR)]
    lambda_dir: PathBuf,

    /// Use labelled STAND-IN code instead of the handlers' zip: the templates are complete, but
    /// the functions refuse to run. For tests and a first look; never deploy it.
    #[arg(long)]
    stand_in_assets: bool,

    /// Pin every stack to this AWS account (12 digits). Default: environment-agnostic, taken
    /// from the credentials at deploy time.
    #[arg(long, value_name = "ID")]
    account: Option<String>,

    /// Pin every stack to this AWS region. Default: environment-agnostic.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// Print nothing on success.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct AccountSetupArgs {
    /// The folder to write the template into.
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Print nothing on success.
    #[arg(long, short)]
    quiet: bool,
}

/// `synth diff`'s exit status on an error (1 means "something changed").
const DIFF_ERROR: u8 = 2;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("synth: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Some(Command::Build(args)) => done(build(args)),
        Some(Command::Needs(selection)) => done(needs(&selection)),
        Some(Command::AccountSetup(args)) => done(write_account_setup(&args)),
        // Its own exit statuses: 1 is "something changed", 2 an error.
        Some(Command::Diff(args)) => Ok(diff(&args)),
        Some(Command::Review(args)) => done(review(&args)),
        None => done(match cli.account_setup {
            Some(dir) => write_account_setup(&AccountSetupArgs {
                dir,
                quiet: cli.build.quiet,
            }),
            None if cli.account_needs => needs(&cli.build.stages),
            None => build(cli.build),
        }),
    }
}

/// The stages `selection` names, or every stage of its folder.
fn load_stages(selection: &StageSelection) -> anyhow::Result<Vec<Stage>> {
    Ok(if selection.stage.is_empty() {
        stage::load_all(&selection.stages_dir)?
    } else {
        selection
            .stage
            .iter()
            .map(|name| stage::load(&selection.stages_dir, name))
            .collect::<Result<Vec<_>, _>>()?
    })
}

/// Prints what deploying `args.new` over `args.old` changes: exit 0 (and nothing printed)
/// when nothing does, 1 when something does, 2 on an error.
fn diff(args: &DiffArgs) -> ExitCode {
    match diff::diff_paths(&args.old, &args.new) {
        Ok(report) if report.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            let format = match args.format {
                DiffFormat::Text => diff::Format::Text,
                DiffFormat::Markdown => diff::Format::Markdown,
            };
            print!("{}", diff::render::render(&report, format));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("synth diff: error: {:#}", anyhow::Error::from(e));
            ExitCode::from(DIFF_ERROR)
        }
    }
}

/// Prints the review text of every stack of `args.path`.
fn review(args: &ReviewArgs) -> anyhow::Result<()> {
    print!("{}", review::review_path(&args.path)?);
    Ok(())
}

fn needs(selection: &StageSelection) -> anyhow::Result<()> {
    for s in load_stages(selection)? {
        println!("{}", s.account_needs());
    }
    Ok(())
}

fn write_account_setup(args: &AccountSetupArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    account_setup::write(dir)
        .with_context(|| format!("writing the account setup template to {}", dir.display()))?;
    if !args.quiet {
        println!(
            "wrote {}/{}.template.json (stack {})",
            dir.display(),
            account_setup::TEMPLATE_STEM,
            account_setup::STACK_NAME
        );
    }
    Ok(())
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    let stages = load_stages(&args.stages)?;
    let manifest = manifest::load_or_default(args.manifest.as_deref())?;
    let source = if args.stand_in_assets {
        AssetSource::StandIn
    } else {
        AssetSource::Built(args.lambda_dir.clone())
    };
    let pin = Environment {
        account: args.account,
        region: args.region,
    };
    let stacks = assembly::synthesize(&stages, &manifest, &source, &pin)?;
    let files = assembly::render(&stacks)?;
    assembly::write(&files, &args.out)
        .with_context(|| format!("writing the cloud assembly to {}", args.out.display()))?;

    if !args.quiet {
        for s in &stacks {
            println!(
                "{:<16} stack {:<20} {} resources  {}",
                s.id,
                s.stage.stack_name,
                s.template.resources.len(),
                s.environment.uri()
            );
        }
        println!("wrote {} ({} files)", args.out.display(), files.files.len());
        if args.stand_in_assets {
            println!(
                "note: STAND-IN handler code (--stand-in-assets): do not deploy this assembly"
            );
        }
    }
    Ok(())
}
