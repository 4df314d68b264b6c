//! Build throughput: `slimd build` of the apps image from a python report, reading the
//! image's layers in place and reading the save stream, against `docker save` of the same
//! image.
use std::{path::Path, process::Command};

use super::{REPEATS, median, timed};
use crate::images;

const PYTHON: &str = "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))";
const TAG: &str = "slimd-bench/apps:slim";

pub fn run(slimd: &Path) -> anyhow::Result<()> {
    let image = images::APPS.ensure()?;
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("python.json");
    let saved = dir.path().join("saved.tar");
    timed(
        Command::new(slimd)
            .args(["run", "-q", "--tag", TAG, "-o"])
            .arg(&report)
            .args([image, "--", "python3", "-c", PYTHON]),
    )?;
    let (mut save, mut layers, mut stream) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..REPEATS {
        eprintln!("build: round {} of {REPEATS}", i + 1);
        save.push(
            timed(
                Command::new("docker")
                    .args(["save", "-o"])
                    .arg(&saved)
                    .arg(image),
            )?
            .as_secs_f64(),
        );
        for (source, times) in [("layers", &mut layers), ("save", &mut stream)] {
            let took = timed(
                Command::new(slimd)
                    .args([
                        "build",
                        "-q",
                        image,
                        "--tag",
                        TAG,
                        "--image-source",
                        source,
                        "--report",
                    ])
                    .arg(&report),
            )?;
            times.push(took.as_secs_f64());
        }
    }
    let _ = super::docker(&["rmi", "-f", TAG]);
    let base = median(save);
    let (l, s) = (median(layers), median(stream));
    println!(
        "\nBuild throughput: the apps image ({image}) slimmed for the python case, median of {REPEATS}"
    );
    println!("| run | seconds | vs docker save |");
    println!("| --- | --- | --- |");
    println!("| docker save of the image | {base:.2} | 1.00× |");
    println!(
        "| slimd build, layers read in place | {l:.2} | {:.2}× |",
        l / base
    );
    println!(
        "| slimd build, from the save stream | {s:.2} | {:.2}× |",
        s / base
    );
    Ok(())
}
