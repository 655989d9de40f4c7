//! `interproc`: demos of every interproc mechanism across real OS processes.

mod bench;
mod clean;
mod deadlocks;
mod ls;
mod multiplex;
mod pc;
mod philosophers;
mod procs;
mod server;
mod shm_sem;
mod triggers;

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
    /// Latency and throughput of every transport across two processes, against raw
    /// syscall loops, ipc-channel and the machine's limits.
    Bench(bench::BenchArgs),
    /// Run a demo.
    #[command(subcommand)]
    Demo(Demo),
    /// List the named objects interproc created on this machine, with their owners.
    Ls(ls::LsArgs),
    /// Remove the named objects whose owner process died, and their owner records.
    Clean(clean::CleanArgs),
    /// The wait-for graph of threads blocked on process-shared locks, across processes,
    /// and any deadlock cycles in it (needs the feature `deadlock-detection`).
    Deadlocks(deadlocks::DeadlocksArgs),
}

#[derive(Subcommand)]
enum Demo {
    /// Producers and consumers in separate processes, with an exactly-once check.
    Pc(pc::PcArgs),
    /// select vs poll vs epoll: the cost of one wake-up as the number of idle fds grows.
    Multiplex(multiplex::MultiplexArgs),
    /// Level- vs edge-triggered: wake-ups on the same partly read input, and the stall of
    /// an edge-triggered reader that does not drain.
    Triggers(triggers::TriggersArgs),
    /// One event-loop server (or W pre-forked workers) serving many client processes
    /// over Unix sockets, FIFOs and pipes at once.
    Server(server::ServerArgs),
    /// The dining philosophers: a certain deadlock found and broken by deadlock detection
    /// (`--mode deadlock`, needs the feature `deadlock-detection`), and two fixes
    /// (`ordered`, `waiter`).
    Philosophers(philosophers::PhilosophersArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Bench(a) => bench::run(a),
        Cmd::Ls(a) => ls::ls(a),
        Cmd::Clean(a) => clean::clean(a),
        Cmd::Deadlocks(a) => deadlocks::run(a),
        Cmd::Demo(Demo::Pc(a)) => pc::run(a),
        Cmd::Demo(Demo::Multiplex(a)) => multiplex::run(a),
        Cmd::Demo(Demo::Triggers(a)) => triggers::run(a),
        Cmd::Demo(Demo::Server(a)) => server::run(a),
        Cmd::Demo(Demo::Philosophers(a)) => philosophers::run(a),
    };
    std::process::exit(code);
}
