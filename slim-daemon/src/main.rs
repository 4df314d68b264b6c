use std::process::ExitCode;

use clap::Parser;
use slimd::{cli::Cli, ui::Ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, _) => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let ui = Ui::new(cli.quiet);
    match runtime.block_on(cli.command.execute(ui)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slimd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
