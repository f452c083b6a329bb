//! `devbox doctor` on a good machine and on users who lack what devbox needs.

use std::os::unix::process::CommandExt;

use crate::harness::*;

#[test]
fn doctor_passes_on_a_prepared_machine() {
    let env = TestEnv::new();
    let out = env.run(["doctor"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for check in [
        "kernel",
        "user namespaces",
        "newuidmap",
        "newgidmap",
        "/etc/subuid",
        "/etc/subgid",
        "overlayfs",
        "disk",
        "holder",
    ] {
        assert!(
            text.contains(&format!("ok    {check}")),
            "{check} in:\n{text}"
        );
    }
}

#[test]
fn doctor_explains_a_missing_newuidmap() {
    let env = TestEnv::new();
    let out = env
        .cmd(["doctor"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  newuidmap: not found on PATH"),
        "{text}"
    );
    assert!(text.contains("fix: sudo apt install uidmap"), "{text}");
}

#[test]
fn doctor_explains_a_missing_subordinate_range() {
    if !is_root() {
        return;
    }
    let env = TestEnv::new();
    let nosub = other_user("devbox-nosub");
    std::os::unix::fs::chown(&env.home, Some(nosub.uid), Some(nosub.gid)).unwrap();
    std::os::unix::fs::chown(&env.runtime, Some(nosub.uid), Some(nosub.gid)).unwrap();
    let out = env
        .cmd(["doctor"])
        .uid(nosub.uid)
        .gid(nosub.gid)
        .env("USER", &nosub.name)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  /etc/subuid: user 'devbox-nosub' has no entry in /etc/subuid"),
        "{text}"
    );
    // The suggested range is free in both files (another user may well have 100000-165535).
    let fix = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("fix: `sudo usermod --add-subuids "))
        .unwrap_or_else(|| panic!("{text}"));
    let (range, rest) = fix.split_once(' ').unwrap();
    assert!(rest.starts_with("devbox-nosub`"), "{text}");
    let (start, end) = range.split_once('-').unwrap();
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
    assert_eq!(end - start + 1, 65536, "{text}");
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let f: Vec<&str> = line.split(':').collect();
            let (Some(s), Some(c)) = (f.get(1), f.get(2)) else {
                continue;
            };
            let (s, c): (u64, u64) = (s.parse().unwrap_or(0), c.parse().unwrap_or(0));
            assert!(
                end < s || start >= s + c,
                "{range} overlaps {line} of {file}"
            );
        }
    }
}
