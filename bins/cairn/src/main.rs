//! `cairn`, the reference command-line interface of Cairn: arguments, then options, then
//! one library call, then an exit code.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that ends the process quietly when stdout is closed (`cairn ls | head`)
/// instead of panicking, and with one error line on any other write failure.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::write_stdout(format_args!($($t)*))
    };
}

pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cairn: error: writing output: {e}");
        std::process::exit(1);
    }
}

/// One line: the error and its causes, each cause added only when the message so far does
/// not already say it (our library errors often include their source's text).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}

mod catalog_cmd;
mod disk;
mod files;
mod meta;
mod policy_cmd;
mod repo_cmd;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Agentless, data-aware VM backup and recovery",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an image's format, size, parent chain and partitions.
    Inspect(disk::InspectArgs),
    /// Print an image's allocation map (and, for a child, what it changed).
    Map(disk::MapArgs),
    /// Convert an image (and its parents) to raw, VMDK or VHD.
    Convert(disk::ConvertArgs),
    /// List files of a guest file system inside an image (or, with --repo, a restore point).
    Ls(files::LsArgs),
    /// Copy files or directory trees out of a guest file system inside an image.
    Extract(files::ExtractArgs),
    /// Show size, used and free bytes of each guest file system of an image.
    Df(files::DfArgs),
    /// Create a repository.
    Init(repo_cmd::InitArgs),
    /// Back up a VM's disk images, or a VM bundle (folder or configuration), as one restore point.
    Backup(repo_cmd::BackupArgs),
    /// List restore points.
    Snapshots(repo_cmd::SnapshotsArgs),
    /// Write a disk of a restore point to a file (raw, VMDK or VHD), or with --vm the whole VM.
    Restore(repo_cmd::RestoreArgs),
    /// Check the repository's structure and, with --read-data, every blob.
    Verify(repo_cmd::VerifyArgs),
    /// Find every version of files matching a pattern across restore points.
    Find(catalog_cmd::FindArgs),
    /// Files added, removed and changed between two restore points.
    Diff(catalog_cmd::DiffArgs),
    /// Restore files or directory trees from a restore point.
    RestoreFile(catalog_cmd::RestoreFileArgs),
    /// Check a policy file and print what each job will do.
    Policy(policy_cmd::PolicyArgs),
    /// Run the policy's due jobs once (from cron or a systemd timer).
    Run(policy_cmd::RunArgs),
    /// Run the policy's jobs on schedule until killed (SIGTERM or Ctrl-C).
    Daemon(policy_cmd::DaemonArgs),
    /// Remove restore points by retention rules (restic semantics).
    Forget(policy_cmd::ForgetArgs),
    /// Free the space of removed restore points.
    Prune(policy_cmd::PruneArgs),
    /// Pin a restore point: retention never removes it until it is unpinned.
    Pin(policy_cmd::PinArgs),
    /// Remove a restore point's pin.
    Unpin(policy_cmd::UnpinArgs),
    /// List pinned restore points with their reasons.
    Pins(policy_cmd::PinsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => disk::inspect(&a),
        Command::Map(a) => disk::map(&a),
        Command::Convert(a) => disk::convert(&a),
        Command::Ls(a) => files::ls(&a),
        Command::Extract(a) => files::extract(&a),
        Command::Df(a) => files::df(&a),
        Command::Find(a) => catalog_cmd::find(&a),
        Command::Diff(a) => catalog_cmd::diff(&a),
        Command::RestoreFile(a) => catalog_cmd::restore_file(&a),
        Command::Policy(a) => policy_cmd::policy(&a),
        Command::Run(a) => policy_cmd::run(&a),
        Command::Daemon(a) => policy_cmd::daemon(&a),
        Command::Forget(a) => policy_cmd::forget_cmd(&a),
        Command::Prune(a) => policy_cmd::prune(&a),
        Command::Pin(a) => policy_cmd::pin(&a),
        Command::Unpin(a) => policy_cmd::unpin(&a),
        Command::Pins(a) => policy_cmd::pins(&a),
        Command::Init(a) => repo_cmd::init(&a),
        Command::Backup(a) => repo_cmd::backup(&a),
        Command::Snapshots(a) => repo_cmd::snapshots(&a),
        Command::Restore(a) => repo_cmd::restore(&a),
        Command::Verify(a) => match repo_cmd::verify(&a) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
