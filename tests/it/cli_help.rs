//! Every program's `--help`, walked through every subcommand: each command
//! and each flag has a description, and defaults are shown; every program
//! answers `--version`.

use crate::common;

use common::bin;
use std::process::Command;

/// `argv --help`'s output; a failed or empty help fails the test.
fn help(argv: &[String]) -> String {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("--help")
        .output()
        .expect("the program runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} --help exited with {}: {}",
        argv.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Usage:"),
        "{} --help printed no usage: {text:?}",
        argv.join(" ")
    );
    text
}

/// Lines of `argv --help` (and of every subcommand's) naming a command or
/// a flag with no description, on its line or indented below it.
fn undescribed(argv: Vec<String>, found: &mut Vec<String>) {
    let text = help(&argv);
    let lines: Vec<&str> = text.lines().collect();
    let mut section = "";
    let mut subcommands = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let below = lines.get(i + 1).copied().unwrap_or("");
        let described_below = below.starts_with("          ") && !below.trim().starts_with('-');
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let (name, description) = match trimmed.split_once("  ") {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (trimmed, ""),
        };
        let entry = match section {
            "Commands:" if indent == 2 => {
                if name != "help" {
                    subcommands.push(name.to_string());
                }
                true
            }
            "Options:" | "Arguments:" => {
                (2..=6).contains(&indent) && (name.starts_with('-') || name.starts_with('<'))
            }
            _ => false,
        };
        if entry && description.is_empty() && !described_below {
            found.push(format!("{}: {name}", argv.join(" ")));
        }
    }
    for sub in subcommands {
        let mut next = argv.clone();
        next.push(sub);
        undescribed(next, found);
    }
}

const PROGRAMS: [&str; 5] = [
    "kumactl",
    "kuma-cp",
    "kuma-dp",
    "kuma-injector",
    "kuma-tcp-echo",
];

#[test]
fn every_program_answers_version() {
    for program in PROGRAMS {
        let out = Command::new(bin(program))
            .arg("--version")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(env!("CARGO_PKG_VERSION")),
            "{program}: {text}"
        );
    }
}

#[test]
fn every_command_and_flag_says_what_it_is() {
    let mut found = Vec::new();
    for program in PROGRAMS {
        undescribed(vec![bin(program).display().to_string()], &mut found);
    }
    // The walk read the subcommands' help too, not only each program's.
    for subcommand in [
        "kumactl apply",
        "kumactl get dataplanes",
        "kuma-cp run",
        "kuma-dp run",
    ] {
        let mut argv: Vec<String> = subcommand.split(' ').map(str::to_string).collect();
        argv[0] = bin(&argv[0]).display().to_string();
        assert!(help(&argv).contains("Options:"), "{subcommand} --help");
    }
    assert!(
        found.is_empty(),
        "without a description:\n{}",
        found.join("\n")
    );
}

#[test]
fn kuma_dp_shows_its_defaults() {
    let text = help(&[bin("kuma-dp").display().to_string(), "run".into()]);
    for default in [
        "default: https://localhost:5682",
        "[default: warning]",
        "[default: info]",
        "[default: 1s]",
    ] {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let wanted = default.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&wanted), "{wanted} in:\n{text}");
    }
    assert!(text.contains("/tmp/kuma-dp"), "{text}");
}
