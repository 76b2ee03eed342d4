//! Stable-Rust smoke run of every fuzz target body (no libFuzzer, no nightly).
//!
//! For each target it runs the valid seeds of `biopay_fuzz::seeds_for` (each
//! must be accepted), then pseudo-random inputs and stacked mutations of valid
//! inputs from a fixed seed, until the iteration count or the time bound is
//! reached. A panicking input is saved under `fuzz/artifacts/<target>/` (the
//! layout `cargo fuzz` uses, so `cargo fuzz run <target> <file>` replays it)
//! and the run fails.
//!
//! ```text
//! smoke [TARGET...]              run the named targets (default: all)
//! smoke --write-corpus DIR       write each target's seeds to DIR/<target>/ and exit
//! smoke --list                   print the target names
//! smoke --run TARGET FILE...     run one target on the given inputs (replay a crash)
//! FUZZ_SMOKE_ITERS  inputs per target            (default 20000)
//! FUZZ_SMOKE_SECS   time bound per target, s     (default 20)
//! FUZZ_SMOKE_SEED   generator seed               (default 0x00b1_09a7)
//! FUZZ_SMOKE_SAVE_ACCEPTED=DIR  save newly accepted inputs to DIR/<target>/
//!                   (e.g. fuzz/corpus, to grow a corpus for `cargo fuzz`)
//! ```

use biopay_fuzz::{seeds_for, Body, TARGETS};
use std::{
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Bytes that matter to CBOR, COSE and DER headers.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x04, 0x0c, 0x12, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x21, 0x30,
    0x31, 0x38, 0x3b, 0x40, 0x41, 0x58, 0x59, 0x5f, 0x60, 0x78, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84,
    0x98, 0x9f, 0xa0, 0xa1, 0xb8, 0xbf, 0xc0, 0xc2, 0xd2, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb,
    0xff,
];

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(4) {
        rng.below(16)
    } else {
        rng.below(512)
    };
    let interesting = rng.chance(2);
    (0..len)
        .map(|_| {
            if interesting {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            }
        })
        .collect()
}

/// One random edit of `data`; `other` is another valid input for splicing.
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    if data.is_empty() {
        data.push(rng.byte());
        return;
    }
    let i = rng.below(data.len());
    match rng.below(10) {
        0 => data[i] ^= 1 << rng.below(8),
        1 => data[i] = rng.byte(),
        2 => data[i] = INTERESTING[rng.below(INTERESTING.len())],
        3 => data[i] = data[i].wrapping_add(if rng.chance(2) { 1 } else { 0xff }),
        4 => data.insert(rng.below(data.len() + 1), rng.byte()),
        5 => {
            let n = 1 + rng.below(8.min(data.len() - i));
            data.drain(i..i + n);
        }
        6 => data.truncate(i),
        7 => {
            // Duplicate a chunk in place.
            let n = 1 + rng.below(32.min(data.len() - i));
            let chunk = data[i..i + n].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, chunk);
        }
        8 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let j = rng.below(other.len());
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        _ => {
            // Overwrite a run with random bytes.
            let n = 1 + rng.below(8.min(data.len() - i));
            for b in &mut data[i..i + n] {
                *b = rng.byte();
            }
        }
    }
}

fn mutated(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool[rng.below(pool.len())].clone();
    let other = &pool[rng.below(pool.len())];
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data, other);
    }
    data
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn save_input(dir: &Path, prefix: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(format!("{prefix}-{:016x}", fnv1a(data)));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, data)) {
        eprintln!("could not save {}: {e}", path.display());
    }
    path
}

fn save_artifact(target: &str, data: &[u8]) -> PathBuf {
    save_input(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("artifacts")
            .join(target),
        "crash",
        data,
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim().replace('_', "");
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| {
                eprintln!("{name}={v:?} is not a number; using {default}");
                default
            })
        }
        Err(_) => default,
    }
}

struct Report {
    inputs: u64,
    accepted: u64,
    crashes: u64,
    elapsed: Duration,
    stopped_by_time: bool,
}

fn run_target(
    name: &str,
    body: Body,
    iters: u64,
    budget: Duration,
    seed: u64,
    save_accepted: Option<&Path>,
) -> Report {
    let seeds = seeds_for(name);
    let mut report = Report {
        inputs: 0,
        accepted: 0,
        crashes: 0,
        elapsed: Duration::ZERO,
        stopped_by_time: false,
    };
    // The seeds first: each must be accepted, or the corpus does not reach the deep paths.
    for (i, s) in seeds.iter().enumerate() {
        match panic::catch_unwind(AssertUnwindSafe(|| body(s))) {
            Ok(true) => report.accepted += 1,
            Ok(false) => {
                eprintln!("{name}: seed {i} is not accepted ({} bytes)", s.len());
                report.crashes += 1;
            }
            Err(_) => {
                eprintln!(
                    "{name}: seed {i} panicked; saved to {}",
                    save_artifact(name, s).display()
                );
                report.crashes += 1;
            }
        }
        report.inputs += 1;
    }
    // Inputs that were accepted; mutations start from them.
    let mut pool = seeds;
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut rng = Rng(seed ^ fnv1a(name.as_bytes()));
    let start = Instant::now();
    while report.inputs < iters {
        if start.elapsed() >= budget {
            report.stopped_by_time = true;
            break;
        }
        let input = if rng.chance(4) {
            random_bytes(&mut rng)
        } else {
            mutated(&mut rng, &pool)
        };
        report.inputs += 1;
        match panic::catch_unwind(AssertUnwindSafe(|| body(&input))) {
            Ok(true) => {
                report.accepted += 1;
                if pool.len() < 256 && !pool.contains(&input) {
                    if let Some(dir) = save_accepted {
                        save_input(&dir.join(name), "accepted", &input);
                    }
                    pool.push(input);
                }
            }
            Ok(false) => {}
            Err(_) => {
                report.crashes += 1;
                eprintln!(
                    "{name}: input panicked; saved to {}",
                    save_artifact(name, &input).display()
                );
                if report.crashes >= 5 {
                    eprintln!("{name}: stopping after 5 crashes");
                    break;
                }
            }
        }
    }
    report.elapsed = start.elapsed();
    report
}

fn write_corpus(dir: &Path) -> std::io::Result<()> {
    for (name, _) in TARGETS {
        let target_dir = dir.join(name);
        std::fs::create_dir_all(&target_dir)?;
        for (i, s) in seeds_for(name).iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i}")), s)?;
        }
        println!("{name}: seeds written to {}", target_dir.display());
    }
    Ok(())
}

/// `--run TARGET FILE...`: runs the target body on each file (e.g. a saved
/// crash) and says whether it was accepted; a panic propagates.
fn replay(target: &str, files: &[String]) -> ExitCode {
    let Some((_, body)) = TARGETS.iter().find(|(n, _)| *n == target) else {
        eprintln!("unknown target {target}");
        return ExitCode::FAILURE;
    };
    for file in files {
        match std::fs::read(file) {
            Ok(data) => {
                let accepted = body(&data);
                println!("{file}: {}", if accepted { "accepted" } else { "rejected" });
            }
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, target, files @ ..] = args.as_slice() {
        if flag == "--run" {
            return replay(target, files);
        }
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TARGETS {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    if let Some(pos) = args.iter().position(|a| a == "--write-corpus") {
        let Some(dir) = args.get(pos + 1) else {
            eprintln!("--write-corpus needs a directory");
            return ExitCode::FAILURE;
        };
        return match write_corpus(Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("writing the corpus failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let unknown: Vec<_> = args
        .iter()
        .filter(|a| !TARGETS.iter().any(|(n, _)| n == a))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<_> = TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "unknown target(s) {unknown:?}; targets: {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let iters = env_u64("FUZZ_SMOKE_ITERS", 20_000);
    let budget = Duration::from_secs(env_u64("FUZZ_SMOKE_SECS", 20));
    let seed = env_u64("FUZZ_SMOKE_SEED", 0x00b1_09a7);
    let save_accepted = std::env::var_os("FUZZ_SMOKE_SAVE_ACCEPTED").map(PathBuf::from);
    println!(
        "fuzz smoke: up to {iters} inputs or {} s per target, seed {seed:#x}",
        budget.as_secs()
    );
    // Panics are caught and reported with the saved input; keep their messages short.
    panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));

    let (mut passed, mut failed) = (0, 0);
    for (name, body) in TARGETS {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        let r = run_target(name, *body, iters, budget, seed, save_accepted.as_deref());
        println!(
            "{name:>19}: {:>6} inputs in {:>5.1} s, {:>5} accepted, {} crashes{}",
            r.inputs,
            r.elapsed.as_secs_f64(),
            r.accepted,
            r.crashes,
            if r.stopped_by_time {
                " (time bound reached)"
            } else {
                ""
            }
        );
        if r.crashes == 0 {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("fuzz smoke: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
