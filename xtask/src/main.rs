use clap::{Parser, Subcommand};
use xtask::{ebpf, images, workspace_root};

#[derive(Parser)]
#[command(about = "slimd developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Rebuild the eBPF object with nightly + bpf-linker and refresh its stamp.
    BuildEbpf,
    /// Fail when the committed eBPF object is stale.
    CheckEbpf,
    /// Make the test images from Debian packages (cached between runs).
    Images,
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::BuildEbpf => ebpf::build(&root),
        Task::CheckEbpf => ebpf::check(&root),
        Task::Images => {
            for tag in [images::APPS.ensure()?, images::busybox()?] {
                println!("{tag}");
            }
            Ok(())
        }
    }
}
