//! `interproc`: demos of every interproc mechanism across real OS processes.

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
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Ls(a) => ls::ls(a),
    };
    std::process::exit(code);
}
