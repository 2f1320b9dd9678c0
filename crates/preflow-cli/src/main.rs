//! The `preflow` command line: `cond` evaluates one condition; `check` and `trace` inspect
//! bundles; `serve` runs the reference gateway; `ext-proc` runs bundles as an Envoy external
//! processor; `template apply` applies an SAP policy template to a proxy.

mod check;
mod cond;
mod ext_proc;
mod serve;
mod template;
mod trace;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// preflow: run Apigee-style API proxies as a Rust library.
#[derive(Debug, Parser)]
#[command(name = "preflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and evaluate one condition; prints `true` or `false`.
    Cond(cond::Args),
    /// Load bundles (an `apiproxy/` or `sharedflowbundle/` folder, an SAP export or policy
    /// template, a folder holding them, or a zip) and report every problem with its rule
    /// id, file:line:column, source line and caret. Exits 1 on errors, 2 on usage
    /// problems.
    Check(check::Args),
    /// Run one request through bundles (local state, no target called) and print each
    /// flow, condition and policy with its result.
    Trace(trace::Args),
    /// Serve bundles: the reference gateway (hyper and tokio).
    Serve(Box<serve::Args>),
    /// Run bundles as an Envoy external processor (ext_proc v3, gRPC).
    ExtProc(Box<ext_proc::Args>),
    /// SAP policy templates: `template apply TEMPLATE PROXY -o OUT` adds a template's
    /// policies to a proxy and attaches its steps to the flows it names.
    Template(template::Args),
}

// mimalloc returns freed pages to the system after a short delay; glibc's malloc keeps
// the buffers of a burst of large request bodies resident (measured in the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cond(args) => cond::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::ExtProc(args) => ext_proc::run(&args),
        Command::Template(args) => template::run(&args),
    }
}
