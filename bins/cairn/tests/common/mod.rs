//! What the CLI tests share: running the `cairn` binary in a clean environment, and the
//! oracle-tool helpers of `cairn-testkit`.
#![allow(dead_code, unused_imports)]

use std::process::{Command, Output};

pub use cairn_testkit::{have, path_str as s, run_command as run};

/// Variables a developer's shell may set that would change what a test sees.
const CLEARED_ENV: [&str; 3] = ["CAIRN_PASSWORD", "CAIRN_REPOSITORY", "XDG_STATE_HOME"];

/// A `cairn` command with `args`, the variables above removed, and `CAIRN_PASSWORD` set to
/// `password` when given.
pub fn cairn_command(args: &[&str], password: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args);
    for v in CLEARED_ENV {
        c.env_remove(v);
    }
    if let Some(p) = password {
        c.env("CAIRN_PASSWORD", p);
    }
    c
}

/// Runs `cairn args...` (see [`cairn_command`]).
pub fn cairn_output(args: &[&str], password: Option<&str>) -> Output {
    cairn_command(args, password).output().expect("run cairn")
}

/// Runs `cairn args...`, asserts success and returns standard output.
pub fn cairn_ok(args: &[&str], password: Option<&str>) -> String {
    let out = cairn_output(args, password);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cairn prints UTF-8")
}
