//! `synth`: writes the CloudFormation templates and CDK cloud assembly of the wsstack
//! WebSocket API, one stack per stage, without Node or the CDK at synth time.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use wsstack_synth::account_setup;
use wsstack_synth::assembly::{self, Environment};
use wsstack_synth::assets::{AssetSource, DEFAULT_LAMBDA_DIR};
use wsstack_synth::stage::{self, DEFAULT_STAGES_DIR};

/// Synthesize the wsstack WebSocket API into a CDK cloud assembly (cdk.out).
///
/// Reads the stage files (stages/dev.toml, stages/prod.toml, ...), builds one CloudFormation
/// stack per stage (a DynamoDB connections table, one Lambda function per route with its own
/// least-privilege role and log group, the API Gateway WebSocket API and its stage), checks
/// every template, and writes them with their asset manifests. Deploy the result with
/// `aws cloudformation deploy` (see `make deploy`) or `cdk deploy --app cdk.out`.
#[derive(Debug, Parser)]
#[command(
    name = "synth",
    version,
    after_help = "Examples:\n  synth                          every stage, the real handlers' zip (build it with `make handlers`)\n  synth --stage prod             only stages/prod.toml\n  synth --stand-in-assets        templates only, without building the handlers\n  synth --account 123456789012 --region eu-west-1   pin the stacks to one environment\n  synth --account-setup target/account-setup        the one-time account setup template"
)]
struct Cli {
    /// Synthesize only this stage (the name of a file in the stages folder, without .toml).
    /// Repeat for several. Without --stage, every stage is synthesized.
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    stage: Vec<String>,

    /// Synthesize every stage in the stages folder (the default).
    #[arg(long)]
    all: bool,

    /// The folder of stage files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STAGES_DIR)]
    stages_dir: PathBuf,

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

    /// Instead of the stages, write the one-time account setup template (API Gateway's
    /// CloudWatch Logs role, which stages with access logs need) into DIR, as
    /// WsstackAccountSetup.template.json and .yaml. `make account-setup` deploys it.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["stage", "all"])]
    account_setup: Option<PathBuf>,

    /// Instead of writing the assembly, print one JSON line per stage with what deploying it
    /// asks of the account (total reserved concurrency, access logs): the input of
    /// `scripts/deploy.py check`, computed by the same stage resolution as the templates.
    #[arg(long, conflicts_with = "account_setup")]
    account_needs: bool,

    /// Print nothing on success.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(dir) = &cli.account_setup {
        account_setup::write(dir)
            .with_context(|| format!("writing the account setup template to {}", dir.display()))?;
        if !cli.quiet {
            println!(
                "wrote {}/{}.template.json (stack {})",
                dir.display(),
                account_setup::TEMPLATE_STEM,
                account_setup::STACK_NAME
            );
        }
        return Ok(());
    }
    let stages = if cli.stage.is_empty() {
        stage::load_all(&cli.stages_dir)?
    } else {
        cli.stage
            .iter()
            .map(|name| stage::load(&cli.stages_dir, name))
            .collect::<Result<Vec<_>, _>>()?
    };
    if cli.account_needs {
        for s in &stages {
            println!("{}", s.account_needs());
        }
        return Ok(());
    }
    let source = if cli.stand_in_assets {
        AssetSource::StandIn
    } else {
        AssetSource::Built(cli.lambda_dir.clone())
    };
    let pin = Environment {
        account: cli.account,
        region: cli.region,
    };
    let stacks = assembly::synthesize(&stages, &source, &pin)?;
    let files = assembly::render(&stacks)?;
    assembly::write(&files, &cli.out)
        .with_context(|| format!("writing the cloud assembly to {}", cli.out.display()))?;

    if !cli.quiet {
        for s in &stacks {
            println!(
                "{:<16} stack {:<20} {} resources  {}",
                s.id,
                s.stage.stack_name,
                s.template.resources.len(),
                s.environment.uri()
            );
        }
        println!("wrote {} ({} files)", cli.out.display(), files.files.len());
        if cli.stand_in_assets {
            println!(
                "note: STAND-IN handler code (--stand-in-assets): do not deploy this assembly"
            );
        }
    }
    Ok(())
}
