#![no_main]
//! Any UTF-8 text as a policy file: parsing never panics or hangs; a policy that parses
//! resolves and describes every job, and every schedule's next firing is in the future.
use cairn_policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text) {
        Ok(policy) => {
            let _ = policy.describe();
            for job in policy.jobs() {
                let _ = job.describe();
                let t = 1_700_000_000;
                assert!(job.schedule.next_after(t) > t);
                for g in &job.exclude {
                    let _ = g.excludes("/home/user/Music/a.mp3");
                }
            }
        }
        Err(e) => {
            // Every error names a place or a limit.
            let _ = e.to_string();
        }
    }
});
