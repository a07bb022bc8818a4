//! Retention decisions compared with `restic forget --dry-run --json` on the same dates.
//!
//! Every dataset becomes a set of restic snapshots (one tiny file, `restic backup --time`),
//! one restic host per dataset; every policy is applied by both restic and `forget`, and the
//! kept set and the reasons must agree point for point. Skipped when restic is missing and
//! `CI` is unset; fails when restic is missing and `CI` is set.
//!
//! restic before 0.16 does not keep the oldest snapshot when a rule has count left (restic
//! PR #4366); for such a restic our "oldest ..." keeps are expected among its removals.
//! restic before 0.18 labels those keeps without the "oldest " prefix (PR #5039); reasons
//! are compared with that prefix stripped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cairn_policy::civil::{rfc3339, Civil};
use cairn_policy::{forget, Clock, RestorePoint, Retention, SystemClock, UtcOffset};

const PASSWORD: &str = "cairn-test";

fn restic(repo: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (major, minor) of `restic version`, or None when restic is not installed.
fn restic_version() -> Option<(u32, u32)> {
    let out = Command::new("restic").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(1)?;
    let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// Deterministic xorshift so the datasets are fixed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn t(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Civil {
        year: y,
        month: mo,
        day: d,
        hour: h,
        minute: mi,
        second: 0,
    }
    .to_unix()
}

/// Datasets: (host, times, protected times).
fn datasets() -> Vec<(&'static str, Vec<i64>, Vec<i64>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // "mixed": clusters of points over ~2.5 years: several per hour, day, week, month.
    let mut mixed = Vec::new();
    let start = t(2021, 11, 1, 0, 0);
    for _ in 0..22 {
        let base = start + i64::try_from(rng.next(80_000_000)).unwrap();
        let n = 1 + rng.next(4);
        for _ in 0..n {
            mixed.push(base + i64::try_from(rng.next(3 * 86_400)).unwrap());
        }
    }
    // A dense last day: hourly rules have something to choose from.
    let last = t(2024, 5, 20, 0, 0);
    for h in 0..10 {
        mixed.push(last + h * 3600 + i64::try_from(rng.next(3000)).unwrap());
        if h % 3 == 0 {
            mixed.push(last + h * 3600 + 3000 + i64::try_from(rng.next(500)).unwrap());
        }
    }
    // Calendar edges: ISO week-year changes, month ends, leap day, year ends.
    let edges = vec![
        t(2020, 12, 31, 23, 0),
        t(2021, 1, 1, 0, 30),
        t(2021, 1, 3, 23, 59),
        t(2021, 1, 4, 0, 0),
        t(2024, 2, 29, 12, 0),
        t(2024, 3, 1, 0, 0),
        t(2024, 3, 31, 12, 0),
        t(2024, 12, 29, 10, 0),
        t(2024, 12, 30, 10, 0),
        t(2024, 12, 31, 23, 59),
        t(2025, 1, 1, 0, 1),
        t(2026, 12, 31, 12, 0),
        t(2027, 1, 1, 12, 0),
        t(2027, 1, 3, 12, 0),
        t(2027, 1, 4, 12, 0),
    ];
    mixed.sort_unstable();
    mixed.dedup();
    let protected = vec![mixed[3], mixed[mixed.len() / 2], mixed[mixed.len() - 1]];
    vec![("mixed", mixed, protected), ("edges", edges, Vec::new())]
}

/// Policies as restic flags and as `Retention`; `true` = also `--keep-tag protected`.
fn policies() -> Vec<(Vec<&'static str>, Retention, bool)> {
    let within = |s: &str| Some(s.parse().unwrap());
    let r = Retention::default();
    vec![
        (
            vec!["--keep-last", "5"],
            Retention { keep_last: 5, ..r },
            false,
        ),
        (
            vec!["--keep-hourly", "6"],
            Retention {
                keep_hourly: 6,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-daily", "7"],
            Retention { keep_daily: 7, ..r },
            false,
        ),
        (
            vec!["--keep-weekly", "6"],
            Retention {
                keep_weekly: 6,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-monthly", "12"],
            Retention {
                keep_monthly: 12,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-yearly", "3"],
            Retention {
                keep_yearly: 3,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-within", "30d"],
            Retention {
                keep_within: within("30d"),
                ..r
            },
            false,
        ),
        (
            vec!["--keep-within", "1y6m"],
            Retention {
                keep_within: within("1y6m"),
                ..r
            },
            false,
        ),
        (
            vec!["--keep-within", "2d12h"],
            Retention {
                keep_within: within("2d12h"),
                ..r
            },
            false,
        ),
        (
            vec!["--keep-within", "1m"],
            Retention {
                keep_within: within("1m"),
                ..r
            },
            false,
        ),
        (
            vec![
                "--keep-last",
                "2",
                "--keep-daily",
                "5",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "6",
                "--keep-yearly",
                "10",
            ],
            Retention {
                keep_last: 2,
                keep_daily: 5,
                keep_weekly: 4,
                keep_monthly: 6,
                keep_yearly: 10,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-hourly", "3", "--keep-within", "10d"],
            Retention {
                keep_hourly: 3,
                keep_within: within("10d"),
                ..r
            },
            false,
        ),
        (
            vec!["--keep-daily", "200"],
            Retention {
                keep_daily: 200,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-yearly", "100"],
            Retention {
                keep_yearly: 100,
                ..r
            },
            false,
        ),
        (
            vec!["--keep-monthly", "2", "--keep-within", "1m"],
            Retention {
                keep_monthly: 2,
                keep_within: within("1m"),
                ..r
            },
            false,
        ),
        (
            vec!["--keep-last", "1"],
            Retention { keep_last: 1, ..r },
            true,
        ),
        (
            vec!["--keep-weekly", "3", "--keep-within", "7d"],
            Retention {
                keep_weekly: 3,
                keep_within: within("7d"),
                ..r
            },
            true,
        ),
    ]
}

/// time (RFC 3339) -> reasons, for the kept points; removed points map to None.
type Decision = BTreeMap<String, Option<Vec<String>>>;

fn normalise(reasons: &[String]) -> Vec<String> {
    let mut v: Vec<String> = reasons
        .iter()
        .map(|r| {
            let r = r.strip_prefix("oldest ").unwrap_or(r);
            if r.starts_with("has tags") {
                "pinned".to_owned()
            } else {
                r.to_owned()
            }
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn forget_agrees_with_restic() {
    let Some(version) = restic_version() else {
        if std::env::var_os("CI").is_some() {
            panic!("restic not found and CI is set (CI installs restic)");
        }
        eprintln!("skipped: restic not found");
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let data = dir.path().join("data");
    std::fs::write(&data, b"cairn").unwrap();
    restic(&repo, &cache, &["init", "--quiet"]);

    let mut compared = 0;
    for (host, times, protected) in datasets() {
        for &time in &times {
            let c = Civil::from_unix(time);
            let when = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
            let mut args = vec!["backup", "--quiet", "--host", host, "--time", &when];
            if protected.contains(&time) {
                args.extend(["--tag", "protected"]);
            }
            args.push(data.to_str().unwrap());
            restic(&repo, &cache, &args);
        }
        for (flags, rules, with_tag) in policies() {
            let mut args = vec![
                "forget",
                "--dry-run",
                "--json",
                "--host",
                host,
                "--group-by",
                "host",
            ];
            args.extend(flags.iter().copied());
            if with_tag {
                args.extend(["--keep-tag", "protected"]);
            }
            let out = restic(&repo, &cache, &args);
            let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let group = &groups.as_array().unwrap()[0];
            let mut theirs = Decision::new();
            for r in group["reasons"].as_array().unwrap() {
                let time = r["snapshot"]["time"].as_str().unwrap().to_owned();
                let reasons: Vec<String> = r["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_owned())
                    .collect();
                theirs.insert(time, Some(normalise(&reasons)));
            }
            for s in group["remove"].as_array().into_iter().flatten() {
                theirs.insert(s["time"].as_str().unwrap().to_owned(), None);
            }

            let points: Vec<RestorePoint> = times
                .iter()
                .map(|&time| RestorePoint {
                    id: rfc3339(time),
                    time,
                    time_nanos: 0,
                    vm: host.to_owned(),
                    pinned: with_tag && protected.contains(&time),
                })
                .collect();
            // restic measures `--keep-within` from the newest snapshot not in the future of
            // the real clock (the "edges" dataset has points after today), so we do too.
            let now = SystemClock.now();
            let ours = forget(&points, &rules, now, UtcOffset::UTC).unwrap();
            let mut mine = Decision::new();
            for k in &ours[0].keep {
                let mut reasons = k.reasons.clone();
                if version < (0, 16) {
                    reasons.retain(|r| !r.starts_with("oldest "));
                }
                let kept = !reasons.is_empty();
                mine.insert(rfc3339(k.time), kept.then(|| normalise(&reasons)));
            }
            for r in &ours[0].remove {
                mine.insert(rfc3339(r.time), None);
            }
            assert_eq!(
                theirs.len(),
                times.len(),
                "restic saw every snapshot ({host} {flags:?})"
            );
            for (time, want) in &theirs {
                assert_eq!(mine.get(time), Some(want), "{host} {flags:?} at {time}");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * policies().len());
    eprintln!(
        "compared {compared} (dataset, policy) pairs with restic {}.{}",
        version.0, version.1
    );
}
