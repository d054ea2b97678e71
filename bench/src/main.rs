//! `filature-bench`: filature measured side by side with its peers (tokio, may,
//! raw corosensei, std, crossbeam, blocking), all in one process run.
//!
//! ```text
//! filature-bench <scenario> [--quick] [--json] [--count N]
//! filature-bench all [--quick] [--json]
//! filature-bench switch,spawn,offload,call,blocking_call,deferred --originals PYTHON
//! filature-bench list
//! ```
//!
//! Each scenario has one function per system and a registry entry listing them
//! (see [`scenarios`]); filature runs first, then its peers, in the same process.
//! `--originals PYTHON` adds eventlet and Twisted, run by that interpreter
//! (see [`originals`]), to the scenarios they share.

mod chart;
mod harness;
mod loadgen;
mod originals;
mod scenarios;
mod servers;

use std::process::ExitCode;

use harness::{Config, Metric, Report};

/// One system's side of a scenario.
pub(crate) struct System {
    /// `filature`, `corosensei`, `tokio`, `may`, `std`, `crossbeam` or `blocking`.
    pub(crate) name: &'static str,
    pub(crate) run: fn(&Config) -> Vec<Metric>,
}

/// A scenario: its name, the system that is the floor (if any), and its systems.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) floor: Option<&'static str>,
    pub(crate) systems: fn() -> Vec<System>,
}

const USAGE: &str = "usage: filature-bench <scenario[,scenario...]|all|list> [--quick] [--json] [--count N] [--originals PYTHON]\n       filature-bench chart FILE.jsonl [OUT_DIR (default docs/bench)]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("filature-bench: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, cfg, rest) = parse(args)?;
    // Hidden sub-commands: one system's side of a scenario in a fresh process.
    if command == servers::HTTP_SERVER_COMMAND {
        let [system, port, workers] = rest.as_slice() else {
            return Err("usage: __http_server <system> <port> <workers>".into());
        };
        let port = port.parse().map_err(|e| format!("port: {e}"))?;
        let workers = workers.parse().map_err(|e| format!("workers: {e}"))?;
        return servers::run_http_server(system, port, workers);
    }
    if command == servers::ECHO_SERVER_COMMAND {
        let [system, port, workers] = rest.as_slice() else {
            return Err("usage: __echo_server <system> <port> <workers>".into());
        };
        let port = port.parse().map_err(|e| format!("port: {e}"))?;
        let workers = workers.parse().map_err(|e| format!("workers: {e}"))?;
        return servers::run_echo_server(system, port, workers);
    }
    if command == "__echo_load" {
        // For profiling a running echo server by hand: `__echo_load ADDR CONNS MESSAGES`.
        let [addr, conns, messages] = rest.as_slice() else {
            return Err("usage: __echo_load <addr> <conns> <messages>".into());
        };
        let addr = addr.parse().map_err(|e| format!("addr: {e}"))?;
        let conns: usize = conns.parse().map_err(|e| format!("conns: {e}"))?;
        let messages: usize = messages.parse().map_err(|e| format!("messages: {e}"))?;
        let took = loadgen::echo(addr, conns, messages)?;
        let total = (conns * messages) as f64;
        println!(
            "{total} messages in {took:?}: {:.0}/s",
            total / took.as_secs_f64()
        );
        return Ok(());
    }
    if command == scenarios::park::CHILD_COMMAND {
        let system = rest.first().ok_or("missing system for the park child")?;
        return scenarios::park::run_child(system, &cfg);
    }
    if command == "chart" {
        let input = rest.first().ok_or("usage: chart FILE.jsonl [OUT_DIR]")?;
        let out = rest.get(1).map_or("docs/bench", String::as_str);
        let written = chart::render(input.as_ref(), out.as_ref())?;
        for w in written {
            println!("wrote {}", w.display());
        }
        return Ok(());
    }
    let registry = scenarios::registry();
    if command == "list" {
        for s in &registry {
            let mut systems: Vec<_> = (s.systems)().iter().map(|sys| sys.name).collect();
            let originals = originals::systems_for(s.name);
            let with = format!("{} with --originals", originals.join(", "));
            if !originals.is_empty() {
                systems.push(&with);
            }
            println!("{:<14} {} [{}]", s.name, s.about, systems.join(", "));
        }
        return Ok(());
    }
    let chosen: Vec<&Scenario> = if command == "all" {
        registry.iter().collect()
    } else {
        command
            .split(',')
            .map(|name| {
                registry
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| format!("unknown scenario `{name}`"))
            })
            .collect::<Result<_, _>>()?
    };
    // Checked before anything runs, so a missing venv costs no bench time.
    let originals = cfg
        .originals
        .as_deref()
        .map(originals::Originals::new)
        .transpose()?;
    for s in chosen {
        run_scenario(s, &cfg, originals.as_ref());
    }
    Ok(())
}

fn run_scenario(scenario: &Scenario, cfg: &Config, originals: Option<&originals::Originals>) {
    let mut report = Report::new(cfg, scenario.name, scenario.floor);
    for system in (scenario.systems)() {
        for metric in (system.run)(cfg) {
            report.add(system.name, metric);
        }
    }
    if let Some(originals) = originals {
        for (system, metric) in originals.run(scenario.name, cfg.quick) {
            report.add(system, metric);
        }
    }
    report.finish();
}

/// Splits the command line into the command, the options, and positional rest.
fn parse(args: &[String]) -> Result<(String, Config, Vec<String>), String> {
    let mut cfg = Config::default();
    let mut command = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => cfg.quick = true,
            "--json" => cfg.json = true,
            "--count" => {
                let n = it.next().ok_or("--count needs a number")?;
                let n = n
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("--count: `{n}` is not a number"))?;
                cfg.count = Some(n);
            }
            "--originals" => {
                let python = it.next().ok_or("--originals needs a Python interpreter")?;
                cfg.originals = Some(python.to_owned());
            }
            "-h" | "--help" => return Err("help".to_owned()),
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other if command.is_none() => command = Some(other.to_owned()),
            other => rest.push(other.to_owned()),
        }
    }
    let command = command.ok_or("missing scenario")?;
    Ok((command, cfg, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_scenario_and_options() {
        let (cmd, cfg, rest) = parse(&args("park --quick --count 1_000 --json")).unwrap();
        assert_eq!(cmd, "park");
        assert!(cfg.quick && cfg.json);
        assert_eq!(cfg.count, Some(1000));
        assert!(rest.is_empty());
        assert!(parse(&args("park --bogus")).is_err());
        assert!(parse(&args("--quick")).is_err());
        let (cmd, cfg, _) = parse(&args("switch,call --originals /venv/bin/python")).unwrap();
        assert_eq!(cmd, "switch,call");
        assert_eq!(cfg.originals.as_deref(), Some("/venv/bin/python"));
        assert!(parse(&args("switch --originals")).is_err());
    }

    #[test]
    fn every_scenario_is_named_once() {
        let registry = scenarios::registry();
        for (i, s) in registry.iter().enumerate() {
            assert!(
                registry[i + 1..].iter().all(|t| t.name != s.name),
                "{}",
                s.name
            );
        }
    }
}
