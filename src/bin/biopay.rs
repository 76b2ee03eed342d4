//! The `biopay` command line: decode protocol messages and write test vectors.

use clap::{Parser, Subcommand};
use std::{io::Read, path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(
    name = "biopay",
    version,
    about = "biopay: biometric payment authentication anchored in trusted hardware"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print any protocol message (raw bytes or hex) as JSON. Signatures are not verified.
    Decode {
        /// A file, or `-` for standard input.
        input: String,
    },
    /// Write the protocol test vectors (deterministic, from fixed seeds).
    Vectors {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Decode { input } => {
            let mut bytes = Vec::new();
            if input == "-" {
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("reading stdin: {e}"))?;
            } else {
                bytes = std::fs::read(&input).map_err(|e| format!("reading {input}: {e}"))?;
            }
            let json = biopay::decode::decode_to_json(&bytes).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Command::Vectors { out } => {
            let vectors =
                biopay::vectors::generate().map_err(|e| format!("generating vectors: {e}"))?;
            biopay::vectors::write(&out, &vectors)
                .map_err(|e| format!("writing {}: {e}", out.display()))?;
            for v in &vectors {
                println!(
                    "{:<32} signature_valid={:<5} protocol_valid={:<5} {}",
                    v.name,
                    v.signature_valid,
                    v.protocol_valid,
                    v.reason.as_deref().unwrap_or("")
                );
            }
            println!("wrote {} vectors to {}", vectors.len(), out.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("biopay: {e}");
            ExitCode::FAILURE
        }
    }
}
