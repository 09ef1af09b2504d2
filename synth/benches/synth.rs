//! Benchmark of a full synth of every stage: `cargo bench -p wsstack-synth --bench synth`.
//!
//! Prints the median and p90 wall time of the `synth` binary as a user runs it (process start
//! to exit, assembly written) and its peak RSS, then the same synth in-process. The target is
//! 200x faster than `cdk synth` of the equivalent CDK app (5.9 s, 431 MiB here): at most 30 ms
//! and 10 MiB.
//!
//! Then `synth diff` of two full assemblies (every stage; the second with every function's
//! memory doubled, access logs and point-in-time recovery switched): in-process (read both
//! sides, compare, render) and as the binary. The target is under 50 ms.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wsstack_synth::assembly::{self, Environment};
use wsstack_synth::assets::AssetSource;
use wsstack_synth::diff;
use wsstack_synth::stage::{self, Stage};

const PROCESS_RUNS: usize = 50;
const IN_PROCESS_RUNS: usize = 200;
const DIFF_RUNS: usize = 200;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what:<44} median {:>7.2} ms   p90 {:>7.2} ms   min {:>7.2} ms   ({} runs)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times.len()
    );
}

/// Peak RSS of any child process waited for so far, in KiB (Linux reports `ru_maxrss` in KiB).
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_CHILDREN is a valid `who`.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) == 0 {
            usage.ru_maxrss
        } else {
            -1
        }
    }
}

fn bench_process(label: &str, extra: &[&str], out: &Path) {
    let mut times = Vec::with_capacity(PROCESS_RUNS);
    for _ in 0..PROCESS_RUNS {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_synth"))
            .current_dir(workspace())
            .args(["-q", "--out"])
            .arg(out)
            .args(extra)
            .status();
        let elapsed = start.elapsed();
        match status {
            Ok(s) if s.success() => times.push(elapsed),
            other => {
                eprintln!("{label}: synth failed: {other:?}");
                return;
            }
        }
    }
    report(label, times);
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let tmp = std::env::temp_dir().join(format!("wsstack-synth-bench-{}", std::process::id()));
    let out = tmp.join("cdk.out");

    println!(
        "synth of every stage ({:?})",
        stage::stage_names(&workspace().join("stages")).unwrap_or_default()
    );
    bench_process(
        "synth binary, stand-in assets",
        &["--stand-in-assets"],
        &out,
    );
    let lambda = workspace().join("target/lambda");
    if wsstack_synth::assets::zip_path(&lambda).exists()
        && wsstack_synth::assets::binary_zip_path(
            &lambda,
            wsstack_synth::assets::EXAMPLE_BACKEND_BINARY,
        )
        .exists()
    {
        bench_process("synth binary, real handlers' zip", &[], &out);
    } else {
        println!(
            "(no handlers' zip in target/lambda: `make handlers` to bench synth with real assets)"
        );
    }
    let peak = children_peak_rss_kib();
    println!(
        "{:<44} {:.2} MiB (largest of all runs above)",
        "synth binary, peak RSS",
        peak as f64 / 1024.0
    );

    let stages_dir = workspace().join("stages");
    let mut times = Vec::with_capacity(IN_PROCESS_RUNS);
    for _ in 0..IN_PROCESS_RUNS {
        let start = Instant::now();
        let result = stage::load_all(&stages_dir)
            .map_err(|e| e.to_string())
            .and_then(|stages| {
                let manifest = stage::manifest::embedded().map_err(|e| e.to_string())?;
                assembly::synthesize(
                    &stages,
                    &manifest,
                    &AssetSource::StandIn,
                    &Environment::default(),
                )
                .map_err(|e| e.to_string())
            })
            .and_then(|stacks| assembly::render(&stacks).map_err(|e| e.to_string()))
            .and_then(|files| assembly::write(&files, &out).map_err(|e| e.to_string()));
        let elapsed = start.elapsed();
        if let Err(e) = result {
            eprintln!("in-process synth failed: {e}");
            break;
        }
        times.push(elapsed);
    }
    if !times.is_empty() {
        report("in-process synth (library), stand-in assets", times);
    }
    if let Err(e) = bench_diff(&stages_dir, &tmp) {
        eprintln!("diff bench failed: {e}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The stages with changes all over: every function's memory doubled, access logs and
/// point-in-time recovery switched (a log group added or removed, properties changed).
fn changed(mut stages: Vec<Stage>) -> Vec<Stage> {
    for s in &mut stages {
        for (_, f) in &mut s.functions {
            f.memory_mb *= 2;
        }
        s.api.access_logs = !s.api.access_logs;
        s.table.point_in_time_recovery = !s.table.point_in_time_recovery;
    }
    stages
}

/// Writes the assembly of `stages` to `out`.
fn write_assembly(stages: &[Stage], out: &Path) -> Result<(), String> {
    let manifest = stage::manifest::embedded().map_err(|e| e.to_string())?;
    let stacks = assembly::synthesize(
        stages,
        &manifest,
        &AssetSource::StandIn,
        &Environment::default(),
    )
    .map_err(|e| e.to_string())?;
    let files = assembly::render(&stacks).map_err(|e| e.to_string())?;
    assembly::write(&files, out).map_err(|e| e.to_string())
}

/// `synth diff` of two full assemblies, in-process and as the binary.
fn bench_diff(stages_dir: &Path, tmp: &Path) -> Result<(), String> {
    let stages = stage::load_all(stages_dir).map_err(|e| e.to_string())?;
    let (old, new) = (tmp.join("old.out"), tmp.join("new.out"));
    write_assembly(&stages, &old)?;
    write_assembly(&changed(stages), &new)?;
    let mut times = Vec::with_capacity(DIFF_RUNS);
    let mut lines = 0;
    for _ in 0..DIFF_RUNS {
        let start = Instant::now();
        let report = diff::diff_paths(&old, &new).map_err(|e| e.to_string())?;
        let text = diff::render::render(&report, diff::Format::Text);
        times.push(start.elapsed());
        lines = text.lines().count();
    }
    println!("synth diff of two assemblies of every stage ({lines} lines of output)");
    report("in-process diff (read, compare, render)", times);
    let mut times = Vec::with_capacity(PROCESS_RUNS);
    for _ in 0..PROCESS_RUNS {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_synth"))
            .arg("diff")
            .args([&old, &new])
            .output()
            .map_err(|e| e.to_string())?;
        times.push(start.elapsed());
        if out.status.code() != Some(1) {
            return Err(format!("synth diff exited {:?}", out.status));
        }
    }
    report("synth diff binary", times);
    Ok(())
}
