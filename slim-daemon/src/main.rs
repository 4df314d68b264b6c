use std::process::ExitCode;

use clap::Parser;
use slimd::{
    cli::{Cli, Command},
    interrupt,
    ui::Ui,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does, with times; commands only warn unless asked.
    let daemon = matches!(cli.command, Command::Daemon(_));
    let level = match (cli.quiet, cli.verbose + u8::from(daemon)) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, _) => tracing::Level::DEBUG,
    };
    // -vv: the kernel programs' own logs too.
    slimd::sensor::ebpf::KERNEL_LOGS.store(
        level == tracing::Level::DEBUG,
        std::sync::atomic::Ordering::Relaxed,
    );
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if daemon {
        logs.init();
    } else {
        logs.without_time().init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let ui = Ui::new(cli.quiet, cli.verbose > 0);
    let result = runtime.block_on(async {
        interrupt::install().map_err(|e| anyhow::anyhow!("cannot handle signals: {e}"))?;
        cli.command.execute(ui).await
    });
    // Work that saw the signal is finishing its cleanup; it is not waited for long.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match (result, interrupt::received()) {
        (Ok(()), _) => ExitCode::SUCCESS,
        (Err(_), Some(signal)) => {
            let phase = interrupt::phase();
            let during = if phase.is_empty() {
                String::new()
            } else {
                format!(" during \"{phase}\"")
            };
            eprintln!("slimd: {signal}{during}; stopped, and removed what it had made");
            ExitCode::from(signal.exit_code())
        }
        (Err(e), None) => {
            eprintln!("slimd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
