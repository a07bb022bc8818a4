//! The policy file: the shipped example parses, resolution merges class and job, and every
//! kind of mistake names its line and column.

use std::path::Path;

use cairn_policy::{BackupMode, Error, Granularity, KeyRef, Policy, UtcOffset};

fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.toml")
}

#[test]
fn shipped_example_parses() {
    let p = Policy::load(&example_path()).expect("examples/policy.toml must parse");
    assert_eq!(p.classes(), ["desktops", "finance"]);
    let names: Vec<String> = p.jobs().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["finance-db", "finance-web", "lab", "office"]);

    let db = p.job("finance-db").unwrap();
    assert_eq!(db.schedule.to_string(), "hourly at :00");
    assert_eq!(db.retention.keep_last, 24);
    assert_eq!(db.retention.keep_daily, 30);
    assert_eq!(db.retention.keep_monthly, 12);
    assert!(db.exclude.is_empty());
    assert_eq!(
        db.key,
        Some(KeyRef::KeyFile("/etc/cairn/keys/finance.key".into()))
    );
    assert_eq!(db.granularity, Granularity::ImageAndCatalog);
    assert_eq!(db.backup, BackupMode::Incremental);
    assert_eq!(db.protect, Some(cairn_policy::Protect::Monthly));
    assert_eq!(
        db.describe(),
        "job finance-db: class finance, VMs [/vms/finance/db01, /vms/finance/db02], hourly at :00, \
         incremental, verify every 7d, full re-read every 30d, image+catalog, \
         keep last 24 + 30 daily + 12 monthly, pins the first restore point of each month, \
         no exclusions, repository /backup/finance, \
         key file /etc/cairn/keys/finance.key, pre hook [\"/usr/local/bin/db-freeze\", \"--all\"], \
         post hook [\"/usr/local/bin/db-thaw\", \"--all\"]"
    );

    // Job overrides win field by field; the rest comes from the class.
    let web = p.job("finance-web").unwrap();
    assert_eq!(web.schedule.to_string(), "hourly at :30");
    assert_eq!(web.retention.keep_last, 12);
    assert_eq!(web.retention.keep_daily, 30);

    let office = p.job("office").unwrap();
    assert_eq!(office.retention.keep_daily, 7);
    let ex: Vec<&str> = office.exclude.iter().map(|g| g.as_str()).collect();
    assert_eq!(ex, ["*.mp3", "/home/*/Music", "/home/*/.cache"]);
    assert!(office.exclude[0].excludes("/home/ann/song.mp3"));
    assert_eq!(office.throttle.read_mb_per_s, Some(200));
    assert_eq!(office.window.unwrap().to_string(), "22:00-06:00");
    assert_eq!(
        office.key,
        Some(KeyRef::PasswordFile("/etc/cairn/keys/desktops.pass".into()))
    );
    assert!(office
        .describe()
        .contains("keep 7 daily, excluding [*.mp3, /home/*/Music, /home/*/.cache]"));

    let lab = p.job("lab").unwrap();
    assert_eq!(
        (lab.retention.keep_daily, lab.retention.keep_weekly),
        (0, 8)
    );
    assert!(p
        .describe()
        .starts_with("2 classes, 4 jobs, times in UTC\n"));
}

const GOOD: &str = r#"
timezone = "+02:00"

[class.c]
schedule = "daily 02:00"
keep_daily = 7
repository = "/backup/c"

[job.j]
class = "c"
vms = ["/vms/a"]
"#;

#[test]
fn timezone_applies_to_schedule() {
    let p = Policy::parse(GOOD).unwrap();
    assert_eq!(p.timezone(), "+02:00".parse::<UtcOffset>().unwrap());
    assert_eq!(p.jobs()[0].schedule.to_string(), "daily at 02:00 (+02:00)");
}

/// Inserts `line` after the line starting with `after` and returns (text, 1-based line number
/// of the inserted line).
fn with_line(after: &str, line: &str) -> (String, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    for (i, l) in GOOD.lines().enumerate() {
        out.push(l.to_owned());
        if l.starts_with(after) && at == 0 {
            out.push(line.to_owned());
            at = i + 2;
        }
    }
    assert!(at > 0);
    (out.join("\n"), at)
}

fn expect_invalid(text: &str, line: usize, column: usize, needle: &str) {
    match Policy::parse(text) {
        Err(Error::Invalid {
            line: l,
            column: c,
            message,
        }) => {
            assert_eq!((l, c), (line, column), "{message}");
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
            let shown = Policy::parse(text).unwrap_err().to_string();
            assert!(
                shown.starts_with(&format!("policy line {line}, column {column}: ")),
                "{shown}"
            );
        }
        other => panic!("expected Invalid at {line}:{column}, got {other:?}"),
    }
}

#[test]
fn unknown_keys_name_their_line() {
    let (t, n) = with_line("keep_daily", "keep_dialy = 3");
    expect_invalid(&t, n, 1, "unknown field `keep_dialy`");
    let (t, n) = with_line("vms", "colour = \"blue\"");
    expect_invalid(&t, n, 1, "unknown field `colour`");
    let (t, n) = with_line("timezone", "verbose = true");
    expect_invalid(&t, n, 1, "unknown field `verbose`");
}

#[test]
fn type_errors_name_their_line() {
    let (t, n) = with_line("repository", "keep_last = \"ten\"");
    expect_invalid(&t, n, 13, "u32");
    let (t, n) = with_line("repository", "keep_last = -3");
    expect_invalid(&t, n, 13, "-3");
    let (t, n) = with_line("repository", "skip_free_blocks = \"yes\"");
    expect_invalid(&t, n, 20, "bool");
    let (t, n) = with_line("vms", "exclude = \"*.mp3\"");
    expect_invalid(&t, n, 11, "sequence");
}

#[test]
fn invalid_values_name_their_line() {
    let (t, n) = with_line("repository", "keep_within = \"30x\"");
    expect_invalid(&t, n, 15, "invalid duration \"30x\"");
    let (t, n) = with_line("keep_daily", "verify_every = \"soon\"");
    expect_invalid(&t, n, 16, "invalid duration");
    let bad_schedule = GOOD.replace("daily 02:00", "daily 25:00");
    expect_invalid(&bad_schedule, 5, 12, "invalid schedule \"daily 25:00\"");
    let (t, n) = with_line("vms", "exclude = [\"ok\", \"[abc\"]");
    expect_invalid(&t, n, 18, "invalid glob \"[abc\"");
    // In a class no job uses.
    let t = format!("{GOOD}\n[class.unused]\nexclude = [\"a[\"]\n");
    expect_invalid(&t, 14, 12, "invalid glob");
    let t = GOOD.replace("vms = [\"/vms/a\"]", "vms = [\"/vms/a\",\n  \"/vms/[b\"]");
    expect_invalid(&t, 12, 3, "invalid glob");
    let (t, n) = with_line("vms", "window = \"22:00\"");
    expect_invalid(&t, n, 10, "invalid window");
    let (t, n) = with_line("vms", "backup = \"differential\"");
    expect_invalid(&t, n, 10, "differential");
    let (t, n) = with_line("vms", "granularity = \"files\"");
    expect_invalid(&t, n, 15, "files");
    let (t, n) = with_line("vms", "threads = 0");
    expect_invalid(&t, n, 11, "`threads` must be 1 to 64");
    let (t, n) = with_line("vms", "pre_hook = []");
    expect_invalid(&t, n, 12, "needs a program");
    let (t, n) = with_line("vms", "protect = \"daily\"");
    expect_invalid(&t, n, 11, "daily");
    let (t, n) = with_line("vms", "protect = true");
    expect_invalid(&t, n, 11, "string");
    let bad_tz = GOOD.replace("+02:00", "Europe/Paris");
    expect_invalid(&bad_tz, 2, 12, "timezone");
}

/// `io_concurrency` and `threads` are 1..=MAX_PIPELINE_WIDTH (what the engine runs and the
/// CLI flags accept): 0 and 65 are refused at the value, not clamped out of sight.
#[test]
fn throttle_bounds_are_refused_at_the_value() {
    assert_eq!(cairn_policy::MAX_PIPELINE_WIDTH, 64);
    for key in ["io_concurrency", "threads"] {
        // The bounds themselves are accepted and kept as written.
        for n in [1, 64] {
            let (t, _) = with_line("vms", &format!("{key} = {n}"));
            let job = Policy::parse(&t).unwrap().jobs().remove(0);
            let got = match key {
                "threads" => job.throttle.threads,
                _ => job.throttle.io_concurrency,
            };
            assert_eq!(got, Some(n), "{key} = {n}");
        }
        let col = key.len() + 4;
        let (t, n) = with_line("vms", &format!("{key} = 0"));
        expect_invalid(&t, n, col, &format!("`{key}` must be 1 to 64"));
        for big in ["65", "4294967295"] {
            let (t, n) = with_line("vms", &format!("{key} = {big}"));
            expect_invalid(&t, n, col, &format!("`{key}` = {big} exceeds 64"));
        }
        // In the class: refused even though the job overrides it, and in a class no job uses.
        let (t, n) = with_line("keep_daily", &format!("{key} = 65"));
        let t = t.replace(
            "vms = [\"/vms/a\"]",
            &format!("vms = [\"/vms/a\"]\n{key} = 2"),
        );
        expect_invalid(&t, n, col, "exceeds 64");
        let t = format!("{GOOD}\n[class.unused]\n{key} = 100\n");
        expect_invalid(&t, 14, col, "exceeds 64");
    }
    // The read cap has no upper bound (any u32 of MB/s is honoured), only a lower one.
    let (t, n) = with_line("vms", "read_mb_per_s = 0");
    expect_invalid(&t, n, 17, "`read_mb_per_s` must be at least 1");
    let (t, _) = with_line("vms", "read_mb_per_s = 4294967295");
    let job = Policy::parse(&t).unwrap().jobs().remove(0);
    assert_eq!(job.throttle.read_mb_per_s, Some(u32::MAX));
    // Beyond u32: a type error at the value, never a wrapped number.
    let (t, n) = with_line("vms", "threads = 4294967296");
    expect_invalid(&t, n, 11, "");
    // From a file: the path, line and column on one line.
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("p.toml");
    let (t, n) = with_line("vms", "io_concurrency = 65");
    std::fs::write(&path, &t).unwrap();
    let e = Policy::load(&path).unwrap_err();
    assert!(
        matches!(&e, Error::InFile { line, column: 18, .. } if *line == n),
        "{e:?}"
    );
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(
        shown.ends_with(&format!(
            ":{n}:18: `io_concurrency` = 65 exceeds 64, the most one backup runs (1 to 64)"
        )),
        "{shown}"
    );
}

#[test]
fn semantic_errors_name_their_line() {
    let t = GOOD.replace("class = \"c\"", "class = \"nope\"");
    expect_invalid(&t, 10, 9, "unknown class \"nope\"");
    let (t, n) = with_line("repository", "vms = [\"/x\"]");
    expect_invalid(&t, n, 7, "`vms` is a job key");
    let (t, n) = with_line("vms", "key_file = \"/k\"\npassword_file = \"/p\"");
    expect_invalid(&t, n + 1, 17, "not both");
    // In a class no job uses.
    let t = format!("{GOOD}\n[class.unused]\nexclude = [\"a[\"]\n");
    expect_invalid(&t, 14, 12, "invalid glob");
    let t = GOOD.replace("\"/backup/c\"", "\"\"");
    expect_invalid(&t, 7, 14, "`repository` is an empty path");
    let t = GOOD.replace("vms = [\"/vms/a\"]", "vms = []");
    expect_invalid(&t, 11, 7, "`vms` is empty");
    let t = GOOD.replace("repository = \"/backup/c\"", "");
    match Policy::parse(&t) {
        Err(Error::Invalid { line, message, .. }) => {
            assert!(message.contains("no `repository`"), "{message}");
            assert!((9..=11).contains(&line), "{line}");
        }
        other => panic!("{other:?}"),
    }
    // Syntax errors are located too.
    expect_invalid(
        "[class.c]\nschedule = \"hourly\"\nkeep_last = = 3\n",
        3,
        13,
        "",
    );
    expect_invalid(
        "[class.c]\nschedule = \"hourly\"\nschedule = \"daily 01:00\"\n",
        3,
        1,
        "duplicate",
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[class.c]\nbogus = 1\n").unwrap();
    let e = Policy::load(&path).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InFile {
                line: 2,
                column: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:1: ", path.display())),
        "{e}"
    );
    assert!(matches!(
        Policy::load(&dir.path().join("missing.toml")),
        Err(Error::Io { .. })
    ));
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; cairn_policy::MAX_POLICY_BYTES + 1]).unwrap();
    assert!(matches!(Policy::load(&big), Err(Error::TooLarge { .. })));
}

#[test]
fn empty_policy_is_valid_and_has_no_jobs() {
    let p = Policy::parse("").unwrap();
    assert!(p.jobs().is_empty());
}
