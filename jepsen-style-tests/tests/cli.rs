//! The `jepsen check-register` binary: output and exit codes, on handmade logs
//! and on one good and one bad history of the shared corpus.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check_register(file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .arg("check-register")
        .arg(file)
        .args(extra)
        .output()
        .expect("run the jepsen binary")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn good_handmade_log_prints_linearizable_and_exits_0() {
    // Goal: a linearizable log (with an info cas that must take effect late) is accepted.
    let out = check_register(&data("register-good.log"), &[]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "linearizable"),
        "{out:?}"
    );
}

#[test]
fn bad_handmade_log_prints_not_linearizable_with_evidence_and_exits_1() {
    // Goal: a stale read is rejected, and stderr names the offending read.
    let out = check_register(&data("register-bad.log"), &[]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(1), "not linearizable"),
        "{out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process 1 read -> nil (lines 3-4)"), "{err}");
}

#[test]
fn unreadable_input_exits_2() {
    // Goal: a garbled log, a missing file and a non-text file are errors (2), never verdicts.
    let dir = std::env::temp_dir().join(format!("jepsen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.log");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x81]).unwrap();
    for file in [
        data("register-garbled.log"),
        data("no-such-file.log"),
        binary,
    ] {
        let out = check_register(&file, &[]);
        assert_eq!(out.status.code(), Some(2), "{}: {out:?}", file.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{out:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corpus_good_and_bad_files_exit_0_and_1() {
    // Goal: the real binary agrees with the recorded verdicts on one file of each kind.
    let Some(dir) = common::corpus_dir("jepsen-etcd-register") else {
        return;
    };
    let good = check_register(&dir.join("etcd_102.log"), &["--time-limit-s", "60"]);
    assert_eq!(
        (good.status.code(), stdout(&good).as_str()),
        (Some(0), "linearizable"),
        "{good:?}"
    );
    let bad = check_register(&dir.join("etcd_097.log"), &["--time-limit-s", "60"]);
    assert_eq!(
        (bad.status.code(), stdout(&bad).as_str()),
        (Some(1), "not linearizable"),
        "{bad:?}"
    );
}
