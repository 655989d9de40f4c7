//! `interproc`: demos of every interproc mechanism across real OS processes.

mod clean;
mod ls;

use clap::{Parser, Subcommand};

/// Linux IPC demos across real processes.
#[derive(Parser)]
#[command(name = "interproc", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the named objects interproc created on this machine, with their owners.
    Ls(ls::LsArgs),
    /// Remove the named objects whose owner process died, and their owner records.
    Clean(clean::CleanArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Ls(a) => ls::ls(a),
        Cmd::Clean(a) => clean::clean(a),
    };
    std::process::exit(code);
}
