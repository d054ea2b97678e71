//! `--originals PYTHON`: the systems filature replaces, eventlet and Twisted on
//! CPython, measured by `bench/peers/originals.py` and merged into the same
//! report as filature's figures for the same scenario and metric.
//!
//! The script is compiled into this binary (so it always matches it), written
//! to a temporary file for the run, and started once per shared scenario, after
//! the Rust systems of that scenario have run (never at the same time as
//! them). It prints the same JSON lines as `--json`; each one becomes a row of
//! the scenario's report, with its ratio to filature's value. Not part of CI:
//! it needs an interpreter that can `import twisted, eventlet`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::harness::Metric;

/// The script, as built into this binary.
const SCRIPT: &str = include_str!("../peers/originals.py");

/// The scenarios the originals share with filature-bench, and which of the two
/// systems measures each (the script's `SCENARIOS` table; a test keeps them equal).
const SHARED: &[(&str, &[&str])] = &[
    ("switch", &["eventlet"]),
    ("spawn", &["eventlet"]),
    ("offload", &["eventlet", "twisted"]),
    ("call", &["twisted"]),
    ("blocking_call", &["twisted"]),
    ("deferred", &["twisted"]),
];

/// How to get an interpreter that can run the script.
const HOW_TO: &str = "make one with:\n  python3 -m venv /tmp/origvenv && /tmp/origvenv/bin/pip install twisted eventlet\nthen pass --originals /tmp/origvenv/bin/python";

/// The systems of the originals measured for `scenario` (empty when none is).
pub(crate) fn systems_for(scenario: &str) -> &'static [&'static str] {
    SHARED
        .iter()
        .find(|(name, _)| *name == scenario)
        .map_or(&[], |(_, systems)| systems)
}

/// A checked interpreter and the script written out for it.
pub(crate) struct Originals {
    python: String,
    script: PathBuf,
}

impl Originals {
    /// Checks that `python` can `import twisted, eventlet` and writes the script
    /// to a temporary file; the error says how to make a suitable venv.
    pub(crate) fn new(python: &str) -> Result<Self, String> {
        let out = Command::new(python)
            .args(["-c", "import twisted, eventlet"])
            .output()
            .map_err(|e| format!("--originals: cannot run `{python}`: {e}; {HOW_TO}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.lines().last().unwrap_or("(no message)");
            return Err(format!(
                "--originals: `{python}` cannot `import twisted, eventlet` ({why}); {HOW_TO}"
            ));
        }
        let script = std::env::temp_dir().join(format!(
            "filature-bench-originals-{}.py",
            std::process::id()
        ));
        std::fs::write(&script, SCRIPT)
            .map_err(|e| format!("--originals: cannot write {}: {e}", script.display()))?;
        Ok(Originals {
            python: python.to_owned(),
            script,
        })
    }

    /// Runs the script's side of `scenario` and returns its rows. A failure of
    /// the script is reported on stderr and leaves out what it did not measure.
    pub(crate) fn run(&self, scenario: &str, quick: bool) -> Vec<(&'static str, Metric)> {
        if systems_for(scenario).is_empty() {
            return Vec::new();
        }
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).args(["--scenario", scenario]);
        if quick {
            cmd.arg("--quick");
        }
        let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!(
                    "filature-bench: --originals: cannot run {}: {e}",
                    self.python
                );
                return Vec::new();
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let rows: Vec<_> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let row = parse_line(scenario, &line);
                if row.is_none() {
                    eprintln!("filature-bench: --originals: ignored line: {line}");
                }
                row
            })
            .collect();
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!(
                "filature-bench: --originals: the script's {scenario} run failed ({status})"
            ),
            Err(e) => eprintln!("filature-bench: --originals: waiting for the script: {e}"),
        }
        rows
    }
}

impl Drop for Originals {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

/// One of the script's lines as a row of `scenario`'s report: the system (one
/// of the two originals) and its metric. `None` for anything else.
fn parse_line(scenario: &str, line: &str) -> Option<(&'static str, Metric)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("scenario")?.as_str()? != scenario {
        return None;
    }
    let system = match v.get("system")?.as_str()? {
        "eventlet" => "eventlet",
        "twisted" => "twisted",
        _ => return None,
    };
    Some((system, Metric::from_json(line)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_measures_what_the_table_says() {
        for (scenario, systems) in SHARED {
            let quoted: Vec<String> = systems.iter().map(|s| format!("\"{s}\"")).collect();
            let entry = format!("\"{scenario}\": [{}],", quoted.join(", "));
            assert!(SCRIPT.contains(&entry), "originals.py lacks `{entry}`");
            for system in *systems {
                let child = format!("(\"{scenario}\", \"{system}\"): ");
                assert!(SCRIPT.contains(&child), "originals.py lacks `{child}`");
            }
        }
        let registry = crate::scenarios::registry();
        for (scenario, _) in SHARED {
            assert!(registry.iter().any(|s| s.name == *scenario), "{scenario}");
        }
    }

    #[test]
    fn reads_the_scripts_lines() {
        let line = r#"{"scenario": "call", "system": "twisted", "metric": "calls_per_sec_1p", "value": 2.5e5, "note": "CPython"}"#;
        let (system, m) = parse_line("call", line).unwrap();
        assert_eq!(system, "twisted");
        assert_eq!(m.name, "calls_per_sec_1p");
        assert_eq!(m.value, 250_000.0);
        assert!(
            parse_line("switch", line).is_none(),
            "another scenario's line"
        );
        let tokio = line.replace("twisted", "tokio");
        assert!(parse_line("call", &tokio).is_none(), "not an original");
        assert!(parse_line("call", "Traceback (most recent call last):").is_none());
    }

    #[test]
    fn a_missing_interpreter_says_how_to_make_one() {
        let err = Originals::new("/nonexistent/python").err().unwrap();
        assert!(err.contains("pip install twisted eventlet"), "{err}");
    }
}
