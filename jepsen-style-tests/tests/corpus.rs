//! The linearizability checker against the Jepsen etcd register corpus: all
//! 72 recorded verdicts (13 linearizable, 59 not) must be matched.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jepsen_style_tests::corpus;
use jepsen_style_tests::linearizability::{check, Budget, Verdict};
use jepsen_style_tests::models::register::CasRegister;

#[test]
fn every_corpus_verdict_is_matched() {
    // Goal: the checker finds every known violation and invents none, within budget.
    let Some(dir) = common::corpus_dir("jepsen-etcd-register") else {
        return;
    };
    let table = std::fs::read_to_string(dir.join("verdicts.tsv")).expect("verdicts.tsv");
    let expected: BTreeMap<String, bool> = table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (file, verdict) = l.split_once('\t').expect("file<TAB>verdict");
            (
                file.to_owned(),
                verdict.trim().parse::<bool>().expect("true or false"),
            )
        })
        .collect();
    assert_eq!(
        expected.len(),
        72,
        "the corpus README promises 72 histories"
    );
    assert_eq!(expected.values().filter(|v| **v).count(), 13);

    // Every log in the directory must have a verdict, and the reverse.
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(logs, expected.keys().cloned().collect::<Vec<_>>());

    let budget = Budget {
        time_limit: Duration::from_secs(60),
        ..Budget::default()
    };
    let started = Instant::now();
    let mut mismatches = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for (file, &linearizable) in &expected {
        let ops =
            corpus::read_register_log(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let t = Instant::now();
        let verdict = check(&CasRegister::default(), &ops, &budget);
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), file.clone());
        }
        let ok = match &verdict {
            Verdict::Linearizable => linearizable,
            Verdict::NotLinearizable(_) => !linearizable,
            Verdict::Unknown(_) => false,
        };
        if !ok {
            mismatches.push(format!(
                "{file}: expected linearizable={linearizable}, got {verdict:?}"
            ));
        }
    }
    eprintln!(
        "corpus: {} histories checked in {:.2?} (slowest {} in {:.2?})",
        expected.len(),
        started.elapsed(),
        slowest.1,
        slowest.0
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
