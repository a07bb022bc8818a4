//! Retention: a table of hand-checked cases covering every rule and combinations, the JSON
//! the CLI prints, and property tests of the invariants.

use cairn_policy::civil::Civil;
use cairn_policy::{forget, Error, RestorePoint, Retention, Span, UtcOffset, NANOS_PER_SECOND};
use proptest::prelude::*;

/// "YYYY-MM-DD HH:MM[:SS]" UTC -> Unix seconds.
fn t(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().unwrap();
    Civil {
        year: i64::from(n(0, 4)),
        month: n(5, 7),
        day: n(8, 10),
        hour: n(11, 13),
        minute: n(14, 16),
        second: if s.len() > 16 { n(17, 19) } else { 0 },
    }
    .to_unix()
}

fn points(times: &[&str]) -> Vec<RestorePoint> {
    times
        .iter()
        .map(|s| RestorePoint {
            id: s.to_string(),
            time: t(s),
            time_nanos: 0,
            vm: "vm".into(),
            pinned: false,
        })
        .collect()
}

const NOW: &str = "2030-01-01 00:00";

/// Runs forget on one VM and returns (kept ids with reasons, removed ids), newest first.
fn run(ps: &[RestorePoint], r: &Retention) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let g = forget(ps, r, t(NOW), UtcOffset::UTC).unwrap();
    assert_eq!(g.len(), 1);
    let g = &g[0];
    (
        g.keep
            .iter()
            .map(|k| (k.id.clone(), k.reasons.clone()))
            .collect(),
        g.remove.iter().map(|k| k.id.clone()).collect(),
    )
}

fn kept_ids(ps: &[RestorePoint], r: &Retention) -> Vec<String> {
    run(ps, r).0.into_iter().map(|(id, _)| id).collect()
}

fn span(s: &str) -> Option<Span> {
    Some(s.parse().unwrap())
}

#[test]
fn restic_docs_example_keep_daily_4() {
    // restic's manual: one backup every Sunday 11:00 for 12 weeks, `--keep-daily 4` keeps
    // the last four Sundays.
    let days = [
        "2019-09-01",
        "2019-09-08",
        "2019-09-15",
        "2019-09-22",
        "2019-09-29",
        "2019-10-06",
        "2019-10-13",
        "2019-10-20",
        "2019-10-27",
        "2019-11-03",
        "2019-11-10",
        "2019-11-17",
    ];
    let times: Vec<String> = days.iter().map(|d| format!("{d} 11:00")).collect();
    let refs: Vec<&str> = times.iter().map(String::as_str).collect();
    let ps = points(&refs);
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_daily: 4,
            ..Default::default()
        },
    );
    let ids: Vec<&str> = keep.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "2019-11-17 11:00",
            "2019-11-10 11:00",
            "2019-11-03 11:00",
            "2019-10-27 11:00"
        ]
    );
    assert!(keep.iter().all(|(_, r)| r == &["daily snapshot"]));
    assert_eq!(remove.len(), 8);
}

#[test]
fn keep_last() {
    let ps = points(&[
        "2024-01-01 10:00",
        "2024-01-01 11:00",
        "2024-01-01 12:00",
        "2024-01-01 13:00",
    ]);
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_last: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        keep,
        [
            (
                "2024-01-01 13:00".to_string(),
                vec!["last snapshot".to_string()]
            ),
            (
                "2024-01-01 12:00".to_string(),
                vec!["last snapshot".to_string()]
            ),
        ]
    );
    assert_eq!(remove, ["2024-01-01 11:00", "2024-01-01 10:00"]);
    // More than there are: all kept, none as "oldest" (every point is its own bucket).
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_last: 10,
            ..Default::default()
        },
    );
    assert_eq!(keep.len(), 4);
    assert!(remove.is_empty());
}

#[test]
fn keep_hourly_takes_newest_of_each_hour() {
    let ps = points(&[
        "2024-01-01 10:05",
        "2024-01-01 10:40",
        "2024-01-01 11:10",
        "2024-01-01 12:00",
        "2024-01-01 12:30",
    ]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_hourly: 2,
                ..Default::default()
            }
        ),
        ["2024-01-01 12:30", "2024-01-01 11:10"]
    );
    // Three hours with points, rule for 5: all three hours kept plus the oldest point.
    let (keep, _) = run(
        &ps,
        &Retention {
            keep_hourly: 5,
            ..Default::default()
        },
    );
    assert_eq!(
        keep,
        [
            (
                "2024-01-01 12:30".to_string(),
                vec!["hourly snapshot".to_string()]
            ),
            (
                "2024-01-01 11:10".to_string(),
                vec!["hourly snapshot".to_string()]
            ),
            (
                "2024-01-01 10:40".to_string(),
                vec!["hourly snapshot".to_string()]
            ),
            (
                "2024-01-01 10:05".to_string(),
                vec!["oldest hourly snapshot".to_string()]
            ),
        ]
    );
}

#[test]
fn keep_daily_counts_only_days_with_points() {
    let ps = points(&[
        "2024-01-01 09:00",
        "2024-01-01 23:59",
        "2024-01-05 00:00",
        "2024-01-05 08:00",
        "2024-01-20 12:00",
    ]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_daily: 2,
                ..Default::default()
            }
        ),
        ["2024-01-20 12:00", "2024-01-05 08:00"]
    );
}

#[test]
fn keep_weekly_uses_iso_weeks() {
    // 2021-01-02 (Sat) and 2021-01-03 (Sun) are in ISO week 2020-W53; 2021-01-04 (Mon) is 2021-W01.
    let ps = points(&["2021-01-02 12:00", "2021-01-03 12:00", "2021-01-04 12:00"]);
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_weekly: 2,
            ..Default::default()
        },
    );
    let ids: Vec<&str> = keep.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["2021-01-04 12:00", "2021-01-03 12:00"]);
    assert_eq!(remove, ["2021-01-02 12:00"]);
    // Sunday 23:59 and Monday 00:00 are different weeks.
    let ps = points(&["2024-11-24 23:59", "2024-11-25 00:00", "2024-11-18 00:00"]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_weekly: 2,
                ..Default::default()
            }
        ),
        ["2024-11-25 00:00", "2024-11-24 23:59"]
    );
}

#[test]
fn keep_monthly_and_yearly() {
    let ps = points(&[
        "2022-12-31 23:00",
        "2023-01-15 10:00",
        "2023-01-31 10:00",
        "2023-02-28 10:00",
        "2023-12-01 00:00",
        "2024-01-01 00:00",
    ]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_monthly: 3,
                ..Default::default()
            }
        ),
        ["2024-01-01 00:00", "2023-12-01 00:00", "2023-02-28 10:00"]
    );
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_yearly: 2,
                ..Default::default()
            }
        ),
        ["2024-01-01 00:00", "2023-12-01 00:00"]
    );
    let (keep, _) = run(
        &ps,
        &Retention {
            keep_yearly: 5,
            ..Default::default()
        },
    );
    assert_eq!(
        keep.last().unwrap(),
        &(
            "2022-12-31 23:00".to_string(),
            vec!["yearly snapshot".to_string()]
        )
    );
}

#[test]
fn keep_within_is_measured_from_the_newest_point() {
    // Newest is 2024-01-31 12:00; 30d before is 2024-01-01 12:00 and "within" is strictly after.
    let ps = points(&[
        "2024-01-01 12:00",
        "2024-01-01 12:00:01",
        "2024-01-31 12:00",
    ]);
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_within: span("30d"),
            ..Default::default()
        },
    );
    assert_eq!(
        keep,
        [
            (
                "2024-01-31 12:00".to_string(),
                vec!["within 30d".to_string()]
            ),
            (
                "2024-01-01 12:00:01".to_string(),
                vec!["within 30d".to_string()]
            ),
        ]
    );
    assert_eq!(remove, ["2024-01-01 12:00"]);
    // Not from `now`: years later the same points are kept the same way.
    let later = forget(
        &ps,
        &Retention {
            keep_within: span("30d"),
            ..Default::default()
        },
        t("2099-01-01 00:00"),
        UtcOffset::UTC,
    )
    .unwrap();
    assert_eq!(later[0].keep.len(), 2);
    // Weeks are 7 days (an extension; restic rejects `w`).
    let (keep, _) = run(
        &ps,
        &Retention {
            keep_within: span("4w"),
            ..Default::default()
        },
    );
    assert_eq!(keep.len(), 1);
    assert_eq!(keep[0].1, ["within 4w"]);
}

#[test]
fn keep_within_months_follow_go_calendar_arithmetic() {
    // 2024-03-31 minus one month is "2024-02-31", i.e. 2024-03-02 (Go's AddDate).
    let ps = points(&[
        "2024-03-01 12:00",
        "2024-03-02 12:00",
        "2024-03-02 12:00:01",
        "2024-03-31 12:00",
    ]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_within: span("1m"),
                ..Default::default()
            }
        ),
        ["2024-03-31 12:00", "2024-03-02 12:00:01"]
    );
    let ps = points(&[
        "2022-09-30 00:00",
        "2022-10-01 00:00:01",
        "2024-04-01 00:00",
    ]);
    assert_eq!(
        kept_ids(
            &ps,
            &Retention {
                keep_within: span("1y6m"),
                ..Default::default()
            }
        ),
        ["2024-04-01 00:00", "2022-10-01 00:00:01"]
    );
}

#[test]
fn future_points_do_not_move_keep_within() {
    let ps = points(&["2024-01-01 00:00", "2024-01-09 00:00", "2024-06-01 00:00"]);
    let r = Retention {
        keep_within: span("10d"),
        ..Default::default()
    };
    let g = forget(&ps, &r, t("2024-02-01 00:00"), UtcOffset::UTC).unwrap();
    let ids: Vec<&str> = g[0].keep.iter().map(|k| k.id.as_str()).collect();
    // The newest point not in the future is 2024-01-09; the future one is kept (restic).
    assert_eq!(
        ids,
        ["2024-06-01 00:00", "2024-01-09 00:00", "2024-01-01 00:00"]
    );
}

#[test]
fn protected_points_are_always_kept_and_still_fill_buckets() {
    let mut ps = points(&["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00"]);
    ps[0].pinned = true;
    ps[2].pinned = true;
    let (keep, remove) = run(
        &ps,
        &Retention {
            keep_last: 1,
            ..Default::default()
        },
    );
    assert_eq!(
        keep,
        [
            (
                "2024-01-03 10:00".to_string(),
                vec!["pinned".to_string(), "last snapshot".to_string()]
            ),
            ("2024-01-01 10:00".to_string(), vec!["pinned".to_string()]),
        ]
    );
    assert_eq!(remove, ["2024-01-02 10:00"]);
}

#[test]
fn rules_combine_by_union() {
    let ps = points(&[
        "2023-06-15 10:00",
        "2023-12-20 10:00",
        "2024-01-01 08:00",
        "2024-01-01 09:00",
        "2024-01-02 09:00",
        "2024-01-03 09:00",
        "2024-01-03 10:00",
    ]);
    let r = Retention {
        keep_last: 1,
        keep_daily: 2,
        keep_monthly: 2,
        keep_yearly: 2,
        ..Default::default()
    };
    let (keep, remove) = run(&ps, &r);
    assert_eq!(
        keep,
        [
            (
                "2024-01-03 10:00".into(),
                vec![
                    "last snapshot".into(),
                    "daily snapshot".into(),
                    "monthly snapshot".into(),
                    "yearly snapshot".into()
                ]
            ),
            ("2024-01-02 09:00".into(), vec!["daily snapshot".into()]),
            (
                "2023-12-20 10:00".into(),
                vec!["monthly snapshot".into(), "yearly snapshot".into()]
            ),
        ] as [(String, Vec<String>); 3]
    );
    assert_eq!(
        remove,
        [
            "2024-01-03 09:00",
            "2024-01-01 09:00",
            "2024-01-01 08:00",
            "2023-06-15 10:00"
        ]
    );
}

#[test]
fn no_rule_is_refused() {
    let ps = points(&["2024-01-01 10:00"]);
    assert!(matches!(
        forget(&ps, &Retention::default(), 0, UtcOffset::UTC),
        Err(Error::NoRetentionRule)
    ));
    // Even with every point protected: a policy without a rule is a mistake.
    assert!(matches!(
        forget(&[], &Retention::default(), 0, UtcOffset::UTC),
        Err(Error::NoRetentionRule)
    ));
}

#[test]
fn groups_by_vm_and_prints_the_cli_json() {
    let mut ps = points(&["2024-01-01 10:00", "2024-01-02 10:00"]);
    ps.push(RestorePoint {
        id: "b1".into(),
        time: t("2024-01-01 10:00"),
        time_nanos: 0,
        vm: "alpha".into(),
        pinned: false,
    });
    let g = forget(
        &ps,
        &Retention {
            keep_last: 1,
            ..Default::default()
        },
        t(NOW),
        UtcOffset::UTC,
    )
    .unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].vm, "alpha");
    assert_eq!(
        serde_json::to_string(&g[1]).unwrap(),
        r#"{"vm":"vm","keep":[{"id":"2024-01-02 10:00","time":"2024-01-02T10:00:00Z","reasons":["last snapshot"]}],"remove":[{"id":"2024-01-01 10:00","time":"2024-01-01T10:00:00Z"}]}"#
    );
}

#[test]
fn buckets_follow_the_fixed_offset() {
    // 23:30 UTC and 00:30 UTC next day are the same day at -02:00.
    let ps = points(&["2024-01-01 23:30", "2024-01-02 00:30"]);
    let r = Retention {
        keep_daily: 1,
        ..Default::default()
    };
    let g = forget(&ps, &r, t(NOW), "-02:00".parse().unwrap()).unwrap();
    assert_eq!(g[0].keep.len(), 1);
    let g = forget(&ps, &r, t(NOW), UtcOffset::UTC).unwrap();
    assert_eq!(g[0].keep.len(), 1, "daily 1 keeps one day even in UTC");
    assert_eq!(g[0].remove.len(), 1);
}

#[test]
fn out_of_range_times_are_rejected() {
    let ps = vec![RestorePoint {
        id: "x".into(),
        time: i64::MAX,
        time_nanos: 0,
        vm: "v".into(),
        pinned: false,
    }];
    let e = forget(
        &ps,
        &Retention {
            keep_last: 1,
            ..Default::default()
        },
        0,
        UtcOffset::UTC,
    )
    .unwrap_err();
    assert!(matches!(e, Error::TimeOutOfRange { .. }), "{e}");
}

#[test]
fn points_of_one_second_are_ordered_by_nanoseconds() {
    // "a" sorts first by id, but "b" was taken later within the same second.
    let at = |id: &str, time_nanos| RestorePoint {
        id: id.into(),
        time: t("2024-01-01 10:00"),
        time_nanos,
        vm: "vm".into(),
        pinned: false,
    };
    let last1 = Retention {
        keep_last: 1,
        ..Default::default()
    };
    let g = forget(
        &[at("a", 7), at("b", 900_000_000)],
        &last1,
        t(NOW),
        UtcOffset::UTC,
    )
    .unwrap();
    assert_eq!(g[0].keep[0].id, "b");
    assert_eq!(g[0].remove[0].id, "a");
    // Equal times fall back to the id, whatever the input order.
    let g = forget(&[at("b", 0), at("a", 0)], &last1, t(NOW), UtcOffset::UTC).unwrap();
    assert_eq!(g[0].keep[0].id, "a");
    // Missing in JSON: 0.
    let p: RestorePoint =
        serde_json::from_str(r#"{"id":"x","time":5,"vm":"v","pinned":false}"#).unwrap();
    assert_eq!(p.time_nanos, 0);
    let e = forget(&[at("a", NANOS_PER_SECOND)], &last1, t(NOW), UtcOffset::UTC).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NanosOutOfRange {
                nanos: 1_000_000_000,
                ..
            }
        ),
        "{e}"
    );
}

fn arb_points() -> impl Strategy<Value = Vec<RestorePoint>> {
    // Times over ~3 years, a few VMs, unique ids.
    // Some share a second (times in a narrow range) and differ by nanoseconds.
    let dt = prop_oneof![0i64..100_000_000, 0i64..4];
    let nanos = prop_oneof![Just(0u32), 0u32..NANOS_PER_SECOND];
    prop::collection::vec((dt, nanos, 0u8..3, any::<bool>()), 0..60).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (dt, time_nanos, vm, protected))| RestorePoint {
                id: format!("p{i}"),
                time: 1_600_000_000 + dt,
                time_nanos,
                vm: format!("vm{vm}"),
                pinned: protected,
            })
            .collect()
    })
}

fn arb_rules() -> impl Strategy<Value = Retention> {
    (
        0u32..6,
        0u32..6,
        0u32..6,
        0u32..6,
        0u32..6,
        0u32..4,
        prop::option::of(1u32..400),
    )
        .prop_map(|(l, h, d, w, m, y, within)| Retention {
            keep_last: l,
            keep_hourly: h,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_yearly: y,
            keep_within: within.map(|days| Span {
                days,
                ..Default::default()
            }),
        })
}

proptest! {
    #[test]
    fn output_partitions_input_and_keeps_protected(ps in arb_points(), r in arb_rules()) {
        let res = forget(&ps, &r, 2_000_000_000, UtcOffset::UTC);
        if r.is_empty() {
            prop_assert!(matches!(res, Err(Error::NoRetentionRule)));
            return Ok(());
        }
        let groups = res.unwrap();
        let mut seen: Vec<&str> = Vec::new();
        for g in &groups {
            for k in &g.keep {
                prop_assert!(!k.reasons.is_empty());
                seen.push(&k.id);
            }
            for x in &g.remove {
                let p = ps.iter().find(|p| p.id == x.id).unwrap();
                prop_assert!(!p.pinned, "pinned point {} removed", p.id);
                prop_assert_eq!(&p.vm, &g.vm);
                seen.push(&x.id);
            }
        }
        seen.sort_unstable();
        let mut all: Vec<&str> = ps.iter().map(|p| p.id.as_str()).collect();
        all.sort_unstable();
        prop_assert_eq!(seen, all);
    }

    #[test]
    fn keep_last_keeps_exactly_the_newest(ps in arb_points(), n in 1u32..20) {
        let groups = forget(&ps, &Retention { keep_last: n, ..Default::default() }, 0, UtcOffset::UTC).unwrap();
        for g in &groups {
            let mut mine: Vec<&RestorePoint> = ps.iter().filter(|p| p.vm == g.vm).collect();
            mine.sort_by(|a, b| (b.time, b.time_nanos).cmp(&(a.time, a.time_nanos)).then_with(|| a.id.cmp(&b.id)));
            let want = (n as usize).min(mine.len());
            let by_last: Vec<&str> = g.keep.iter()
                .filter(|k| k.reasons.iter().any(|r| r == "last snapshot"))
                .map(|k| k.id.as_str()).collect();
            let newest: Vec<&str> = mine[..want].iter().map(|p| p.id.as_str()).collect();
            prop_assert_eq!(by_last, newest);
            // Everything else is kept only because it is protected.
            for k in &g.keep {
                if !k.reasons.iter().any(|r| r == "last snapshot") {
                    prop_assert_eq!(&k.reasons, &vec!["pinned".to_string()]);
                }
            }
        }
    }
}
