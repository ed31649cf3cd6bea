//! The report directory's front page, `index.html`: the run's title and
//! verdict and a link to every artifact the run wrote (history, results,
//! timeline, each plot inline and linked, the schedule, the nemesis log, the
//! cluster's config and logs).
//!
//! Owns: listing what is in the directory and linking it, with relative
//! links so the directory can be moved or served as is.
//!
//! Must not: write or judge anything else; it links only files that exist
//! when it runs, so it is written last.
//!
//! Caveat: files that appear after it ran (nothing in `jepsen run`) are not
//! linked; the cluster's logs are listed one level deep at most
//! [`LOGS_LISTED_MAX`].

use std::fmt::Write as _;
use std::path::Path;

/// Node and gateway logs linked from the page, at most.
pub const LOGS_LISTED_MAX: usize = 64;

/// The fixed artifacts, in reading order, with what each holds.
const ARTIFACTS: [(&str, &str); 6] = [
    (
        "results.json",
        "results: the verdict, every checker's findings, the faults",
    ),
    (
        "timeline.html",
        "timeline: one lane per client, fault windows shaded",
    ),
    ("history.jsonl", "history: every invoke and completion"),
    (
        "schedule.json",
        "the nemesis schedule (the seed reproduces it)",
    ),
    ("nemesis.log", "the nemesis log: what each fault did, when"),
    ("cluster/cluster.toml", "the cluster's configuration"),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for the report directory `dir`, linking what exists there now.
pub fn index_html(dir: &Path, title: &str, verdict: &str) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p>Verdict: <b>{}</b></p><h2>Artifacts</h2><ul>",
        escape(title),
        escape(verdict)
    );
    for (file, what) in ARTIFACTS {
        if dir.join(file).is_file() {
            let _ = write!(
                body,
                "<li><a href=\"{0}\">{0}</a>: {1}</li>",
                escape(file),
                escape(what)
            );
        }
    }
    let mut logs = sorted_names(&dir.join("cluster/logs"), |n| n.ends_with(".log"));
    logs.truncate(LOGS_LISTED_MAX);
    for log in logs {
        let _ = write!(
            body,
            "<li><a href=\"cluster/logs/{0}\">cluster/logs/{0}</a>: a process's log</li>",
            escape(&log)
        );
    }
    body.push_str("</ul>");
    let plots = sorted_names(dir, |n| n.ends_with(".png"));
    if !plots.is_empty() {
        body.push_str("<h2>Plots</h2>");
    }
    for png in plots {
        let _ = write!(
            body,
            "<p><a href=\"{0}\">{0}</a><br><a href=\"{0}\"><img src=\"{0}\" alt=\"{0}\" style=\"max-width:100%\"></a></p>",
            escape(&png)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:sans-serif\">{body}</body></html>",
        escape(title)
    )
}

/// The names of the files in `dir` that `keep` accepts, sorted; none when
/// `dir` cannot be read.
fn sorted_names(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| keep(n))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every artifact that exists is linked (plots also shown), and
    /// one that does not exist is not.
    #[test]
    fn links_each_existing_artifact_and_no_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cluster/logs")).unwrap();
        for f in [
            "results.json",
            "timeline.html",
            "history.jsonl",
            "nemesis.log",
            "latency.png",
            "cluster/cluster.toml",
            "cluster/logs/node-1.log",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let html = index_html(d, "jepsen <Booking>", "valid");
        for link in [
            "results.json",
            "timeline.html",
            "history.jsonl",
            "nemesis.log",
            "latency.png",
            "cluster/cluster.toml",
            "cluster/logs/node-1.log",
        ] {
            assert!(
                html.contains(&format!("<a href=\"{link}\">")),
                "{link} not linked in {html}"
            );
        }
        assert!(html.contains("<img src=\"latency.png\""));
        assert!(!html.contains("schedule.json"), "a missing file is linked");
        assert!(html.contains("jepsen &lt;Booking&gt;"), "title not escaped");
    }

    /// Goal: an empty or missing directory still gives a page, with no links.
    #[test]
    fn missing_directory_gives_a_page_without_links() {
        let html = index_html(Path::new("/nonexistent/jepsen-report"), "t", "unknown");
        assert!(html.contains("Verdict: <b>unknown</b>"));
        assert!(!html.contains("<a href"));
    }
}
