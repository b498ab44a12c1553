//! The `opsgate` binary: command line, configuration, wiring, start-up and shutdown.

mod app;
mod approvals_cli;
mod catalog;
mod cli;
mod config;
mod mcp_cli;
mod policy_files;
mod starter;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("opsgate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("opsgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
