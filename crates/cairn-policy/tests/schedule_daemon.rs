//! Schedules (property tests) and the daemon core: due jobs with a fake clock, run state.

use cairn_policy::civil::{rfc3339, Civil, MAX_TIME, MIN_TIME};
use cairn_policy::{
    due_jobs, Clock, FakeClock, Policy, RunOutcome, RunPlan, RunState, Schedule, SystemClock,
};
use proptest::prelude::*;

fn t(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().unwrap();
    Civil {
        year: i64::from(n(0, 4)),
        month: n(5, 7),
        day: n(8, 10),
        hour: n(11, 13),
        minute: n(14, 16),
        second: 0,
    }
    .to_unix()
}

const POLICY: &str = r#"
[class.hourly]
schedule = "hourly at :15"
keep_last = 24
verify_every = "7d"
full_reread_every = "30d"
repository = "/backup/h"

[class.nightly]
schedule = "daily 02:00"
keep_daily = 7
window = "22:00-06:00"
repository = "/backup/n"

[job.db]
class = "hourly"
vms = ["/vms/db01", "/vms/db02"]

[job.desk]
class = "nightly"
vms = ["/vms/desk01", "/vms/db01"]
"#;

fn pairs(due: &[cairn_policy::DueRun]) -> Vec<(String, String)> {
    due.iter().map(|d| (d.job.clone(), d.vm.clone())).collect()
}

#[test]
fn due_jobs_follow_schedules_windows_and_one_run_per_vm() {
    let policy = Policy::parse(POLICY).unwrap();
    let jobs = policy.jobs();
    let clock = FakeClock::new(t("2024-11-24 23:00"));
    let mut state = RunState::new();

    // Never ran: all due, but /vms/db01 only once (job db comes first).
    let due = due_jobs(&jobs, &state, clock.now());
    let p = |j: &str, v: &str| (j.to_owned(), v.to_owned());
    assert_eq!(
        pairs(&due),
        [
            p("db", "/vms/db01"),
            p("db", "/vms/db02"),
            p("desk", "/vms/desk01")
        ]
    );
    for d in &due {
        let plan = state.plan(policy.job(&d.job).unwrap(), &d.vm, clock.now());
        assert_eq!(
            plan,
            RunPlan {
                verify: d.job == "db",
                full_read: true
            }
        );
        state.record_start(&d.job, &d.vm, clock.now(), plan);
    }
    // Running: nothing is due on those VMs, not even desk on db01.
    clock.advance(3600);
    assert!(due_jobs(&jobs, &state, clock.now()).is_empty());
    for d in &due {
        state.record_finish(&d.job, &d.vm, clock.now(), RunOutcome::Succeeded);
    }
    // 2024-11-25 00:00: db's 23:15 firing came after its 23:00 start, so db is due again.
    let due = due_jobs(&jobs, &state, clock.now());
    assert_eq!(pairs(&due), [p("db", "/vms/db01"), p("db", "/vms/db02")]);
    assert_eq!(rfc3339(due[0].scheduled.unwrap()), "2024-11-24T23:15:00Z");
    for d in &due {
        let plan = state.plan(policy.job(&d.job).unwrap(), &d.vm, clock.now());
        assert_eq!(
            plan,
            RunPlan {
                verify: false,
                full_read: false
            }
        );
        state.record_start(&d.job, &d.vm, clock.now(), plan);
        state.record_finish(&d.job, &d.vm, clock.now() + 60, RunOutcome::Succeeded);
    }
    // desk01 ran at 23:00; next daily 02:00 is due at 02:00, inside its window.
    clock.set(t("2024-11-25 01:59"));
    let due = due_jobs(&jobs, &state, clock.now());
    assert_eq!(pairs(&due), [p("db", "/vms/db01"), p("db", "/vms/db02")]);
    clock.set(t("2024-11-25 02:00"));
    let due = due_jobs(&jobs, &state, clock.now());
    assert!(pairs(&due).contains(&p("desk", "/vms/desk01")));
    // desk on db01 never ran; at 12:00 it is outside the window, so not due.
    clock.set(t("2024-11-25 12:00"));
    let due = due_jobs(&jobs, &state, clock.now());
    assert!(due.iter().all(|d| d.job != "desk"));
    // After 7 days a db run verifies, after 30 a full re-read.
    let db = policy.job("db").unwrap();
    assert!(state.plan(db, "/vms/db01", t("2024-12-01 23:00")).verify);
    assert!(!state.plan(db, "/vms/db01", t("2024-12-01 23:00")).full_read);
    assert!(state.plan(db, "/vms/db01", t("2024-12-24 23:00")).full_read);
}

#[test]
fn run_state_round_trips_and_rejects_garbage() {
    let mut s = RunState::new();
    s.record_start(
        "j",
        "v",
        100,
        RunPlan {
            verify: true,
            full_read: false,
        },
    );
    s.record_finish(
        "j",
        "v",
        200,
        RunOutcome::Failed {
            message: "é".repeat(5000),
        },
    );
    s.record_finish("k", "w", 300, RunOutcome::Overran { window_closed: 250 });
    let r = s.record("j", "v").unwrap();
    assert_eq!(
        (r.last_start, r.last_end, r.last_verify),
        (100, Some(200), Some(100))
    );
    match &r.outcome {
        RunOutcome::Failed { message } => assert!(message.len() <= cairn_policy::MAX_MESSAGE_LEN),
        o => panic!("{o:?}"),
    }
    let json = s.to_json();
    assert_eq!(RunState::from_json(&json).unwrap(), s);
    let e = RunState::from_json("{\"runs\": {\"j\": 3}}").unwrap_err();
    assert!(
        matches!(e, cairn_policy::Error::RunState { line: 1, .. }),
        "{e}"
    );
}

#[test]
fn clocks() {
    let c = FakeClock::new(5);
    c.advance(10);
    assert_eq!(c.now(), 15);
    c.set(-3);
    assert_eq!(c.now(), -3);
    // The system clock is past 2024 on any machine running this test.
    assert!(SystemClock.now() > t("2024-01-01 00:00"));
}

fn arb_schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        Just("hourly".to_owned()),
        (0u32..60).prop_map(|m| format!("hourly at :{m:02}")),
        (0u32..24, 0u32..60).prop_map(|(h, m)| format!("daily {h:02}:{m:02}")),
        (1u32..128, 0u32..24).prop_map(|(mask, h)| {
            let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            let days: Vec<&str> = (0..7)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| names[i])
                .collect();
            format!("weekly {} {h:02}:30", days.join(","))
        }),
        (1u32..32, 0u32..24).prop_map(|(d, h)| format!("monthly {d} {h:02}:00")),
        (1u32..100).prop_map(|h| format!("every {h}h")),
        (1u32..1000).prop_map(|m| format!("every {m}min")),
        (0u32..24).prop_map(|h| format!("*-*-* {h:02}:05:00")),
    ]
    .prop_map(|s| s.parse::<Schedule>().unwrap())
    .prop_flat_map(|s| {
        (-50_400i32..=50_400).prop_map(move |off| {
            s.clone()
                .with_offset(cairn_policy::UtcOffset::from_seconds(off / 60 * 60).unwrap())
        })
    })
}

proptest! {
    #[test]
    fn next_after_is_strictly_after_and_stable(s in arb_schedule(), t0 in MIN_TIME / 2..MAX_TIME / 2) {
        let n = s.next_after(t0);
        prop_assert!(n > t0);
        // No firing in between: asking from any instant in [t0, n) gives n again.
        prop_assert_eq!(s.next_after(n - 1), n);
        prop_assert_eq!(s.next_after(t0 + (n - t0) / 2), n);
        // And the next one is later still.
        prop_assert!(s.next_after(n) > n);
        // At most ~62 days apart for calendar rules, 100h for `every`.
        prop_assert!(n - t0 <= 62 * 86_400);
    }

    #[test]
    fn any_text_parses_or_errors(s in "\\PC{0,40}") {
        let _ = s.parse::<Schedule>();
        let _ = Policy::parse(&s);
    }
}
