//! The README's tour, as a newcomer follows it: `make dev` (the `canopy dev` it runs), then
//! every `$ ` command of the tour's console block pasted into bash, literally (heredocs and
//! comments included), with the dev kubeconfig exported and `kubectl` and `kubectl-canopy`
//! on `PATH`. Each command must succeed and print what the README shows, tolerating only
//! what varies from run to run: AGE columns, column padding, and `...` lines (any lines).
//! A command the README shows no output for only has to succeed.
//!
//! Reads (`kubectl get`, `kubectl canopy tree`) are retried for a few seconds before they
//! count as different, as a person would run them again: canopy needs a moment to create
//! a namespace, and the README does not show that moment. Writes run once.
//!
//! The node part of the tour (`canopy dev --node`) is not run here: it needs root and the
//! machine's only node, and `tests/node_dev.rs` and `tests/node.rs` cover it.
//!
//! Then the user guide, on the tour's cluster: its owner's view (`tree -A` as a member of
//! the owners' group) must print what it shows, its set-up check must fail with the
//! message it quotes, and its day-to-day commands must work.
//!
//! At the end the Argo CD health checks of `config/argocd/` run on the tour's live
//! objects, which must all be Healthy.

#[path = "common/argocd.rs"]
mod argocd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argocd::{HealthCheck, health};
use canopy::dev::Binaries;

/// How long a read may take to show what the README shows.
const SETTLE: Duration = Duration::from_secs(20);

/// One `$ ` command of a console block and the output shown under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The console blocks of `markdown`, in order, each as its lines without the fence's
/// indentation (a block in a list item is indented).
fn console_blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in markdown.lines() {
        let indent = line.len() - line.trim_start().len();
        match current.as_mut() {
            None if line.trim_start() == "```console" => current = Some((indent, Vec::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => {
                blocks.extend(current.take().map(|(_, block)| block))
            }
            Some((fence, block)) => block.push(
                line.get((*fence).min(indent)..)
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
    }
    blocks
}

/// The steps of one console block: a line starting with `$ ` starts a command, which goes
/// on over lines ending in `\` and through a heredoc's terminator; the lines after it,
/// up to the next command, are its output.
fn steps(block: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = block.iter();
    while let Some(line) = lines.next() {
        let Some(first) = line.strip_prefix("$ ") else {
            let step = steps
                .last_mut()
                .unwrap_or_else(|| panic!("output before any command: {line:?}"));
            step.expected.push(line.clone());
            continue;
        };
        let mut command = first.to_owned();
        let mut last = first.to_owned();
        let heredoc = heredoc_terminator(first);
        while last.ends_with('\\') {
            last = lines.next().expect("a continued line").clone();
            command.push('\n');
            command.push_str(&last);
        }
        if let Some(terminator) = heredoc {
            loop {
                let body = lines
                    .next()
                    .unwrap_or_else(|| panic!("heredoc {terminator} is not closed"));
                command.push('\n');
                command.push_str(body);
                if body == &terminator {
                    break;
                }
            }
        }
        steps.push(Step {
            command,
            expected: Vec::new(),
        });
    }
    steps
}

/// `YAML` for a command with `<<'YAML'` (or `<<YAML`).
fn heredoc_terminator(command: &str) -> Option<String> {
    let rest = command.split_once("<<")?.1;
    let word = rest.trim_start_matches('-').split_whitespace().next()?;
    Some(word.trim_matches(|c| c == '\'' || c == '"').to_owned())
}

/// A line with what varies taken out: durations (an AGE column) become `<age>` and runs
/// of spaces (table padding, which follows the widths of those durations) become one.
fn normalize(line: &str) -> String {
    line.split_whitespace()
        .map(|token| if is_age(token) { "<age>" } else { token })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `5s`, `13m`, `2m30s`, `4h`, `3d`: how kubectl prints an age.
fn is_age(token: &str) -> bool {
    let mut rest = token;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = rest.chars().next().filter(|c| "smhdy".contains(*c)) else {
            return false;
        };
        rest = &rest[unit.len_utf8()..];
        parts += 1;
    }
    parts > 0
}

/// Whether `actual` is what `expected` shows: line by line after `normalize`; a line
/// `...` stands for any number of lines, and a line ending in `...` for any line that
/// starts like it.
fn matches(expected: &[String], actual: &[String]) -> bool {
    let expected: Vec<String> = expected.iter().map(|l| normalize(l)).collect();
    let actual: Vec<String> = actual.iter().map(|l| normalize(l)).collect();
    fn go(expected: &[String], actual: &[String]) -> bool {
        match expected.split_first() {
            None => actual.is_empty(),
            Some((e, rest)) if e == "..." => (0..=actual.len()).any(|n| go(rest, &actual[n..])),
            Some((e, rest)) => actual.split_first().is_some_and(|(a, actual_rest)| {
                let same = match e.strip_suffix("...") {
                    Some(prefix) => a.starts_with(prefix.trim_end()),
                    None => a == e,
                };
                same && go(rest, actual_rest)
            }),
        }
    }
    go(&expected, &actual)
}

fn output_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// `canopy dev`, as `make dev` runs it (`cargo run --bin canopy -- dev`), with its
/// kubeconfig and data in a temporary directory instead of the repository's `.canopy/`.
struct Dev {
    child: Child,
    kubeconfig: PathBuf,
    stdout: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> Dev {
        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let stdout = dir.path().join("stdout");
        let log = dir.path().join("canopy.log");
        let child = Command::new(env!("CARGO_BIN_EXE_canopy"))
            .args(["dev", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::fs::File::create(&stdout).expect("a stdout file"))
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("canopy dev starts");
        let mut dev = Dev {
            child,
            kubeconfig,
            stdout,
            _dir: dir,
        };
        let started = Instant::now();
        // canopy dev prints its last line once the kubeconfig is written.
        while output_lines(&dev.printed()).len() < 2 {
            if let Ok(Some(status)) = dev.child.try_wait() {
                panic!(
                    "canopy dev exited early ({status}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "canopy dev not ready after 3 minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "canopy dev ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        dev
    }

    /// What canopy dev printed so far, with its kubeconfig's path written as the README
    /// writes it.
    fn printed(&self) -> String {
        let printed = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        match std::fs::canonicalize(&self.kubeconfig) {
            Ok(path) => printed.replace(
                &path.display().to_string(),
                "/path/to/canopy/.canopy/kubeconfig",
            ),
            Err(_) => printed,
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` in bash as a pasted line: stdout and stderr interleaved, as a terminal
/// shows them.
fn run(command: &str, kubeconfig: &Path, path: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{{ {command}\n}} 2>&1"))
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The user guide's "Set up" check: the command in backticks after "Check that the webhooks
/// answer:" and the message in backticks after "must fail with".
fn webhook_check(guide: &str) -> (String, String) {
    let after = guide
        .split_once("Check that the webhooks answer:")
        .expect("the user guide's set-up check")
        .1;
    let ticked = |text: &str| -> String {
        let start = text.find('`').expect("a `command`") + 1;
        let len = text[start..].find('`').expect("a closing backtick");
        text[start..start + len].to_owned()
    };
    let command = ticked(after);
    let message = ticked(
        after
            .split_once("must fail with")
            .expect("must fail with")
            .1,
    );
    (command, message)
}

/// The `kubectl` commands of the user guide's "Day to day" table (the last cell of each
/// row), except those with a `...` placeholder.
fn day_to_day_commands(guide: &str) -> Vec<String> {
    guide
        .split_once("### Day to day")
        .expect("the user guide's day-to-day table")
        .1
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cell = row.trim_end_matches('|').rsplit('|').next()?.trim();
            let command = cell.strip_prefix('`')?.strip_suffix('`')?;
            (command.starts_with("kubectl ") && !command.contains("..."))
                .then(|| command.to_owned())
        })
        .collect()
}

/// Runs `step` until it succeeds and prints what `doc` shows; only reads run again.
fn run_step(doc: &str, step: &Step, kubeconfig: &Path, path: &str) {
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let (success, output) = run(&step.command, kubeconfig, path);
        let actual = output_lines(&output);
        let shown = step.expected.is_empty() || matches(&step.expected, &actual);
        if success && shown {
            eprintln!(
                "ok after {tries} run(s): $ {}",
                step.command.lines().next().unwrap_or_default()
            );
            return;
        }
        if !is_read(&step.command) || started.elapsed() > SETTLE {
            panic!(
                "$ {}\nexited {}, printing\n{}\nwhile {doc} shows\n{}",
                step.command,
                if success { "0" } else { "non-zero" },
                actual.join("\n"),
                step.expected.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn is_read(command: &str) -> bool {
    command.starts_with("kubectl get ") || command.starts_with("kubectl canopy tree")
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(argocd::repo_path("README.md")).expect("README.md");
    let blocks = console_blocks(&readme);
    let make_dev = steps(&blocks[0]);
    assert_eq!(
        make_dev.len(),
        1,
        "the first console block is `make dev`: {make_dev:?}"
    );
    assert_eq!(make_dev[0].command, "make dev");
    let tour = steps(&blocks[1]);
    assert!(
        tour.first()
            .is_some_and(|s| s.command.starts_with("kubectl apply -f - <<'YAML'")),
        "the second console block is the tour: {tour:?}"
    );

    let kubectl = Binaries::locate()
        .expect("run `make envtest` first")
        .kubectl;
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-canopy"));
    let dir_of = |p: &Path| p.parent().expect("a directory").display().to_string();
    let path = format!(
        "{}:{}:{}",
        dir_of(&kubectl),
        dir_of(&plugin),
        std::env::var("PATH").unwrap_or_default()
    );

    let dev = Dev::start();
    let printed = output_lines(&dev.printed());
    // `make dev` prints its own lines and cargo's before canopy dev's: the README's
    // leading `...` covers them.
    assert!(
        matches(&make_dev[0].expected, &printed),
        "`make dev` prints\n{}\nwhile the README shows\n{}",
        printed.join("\n"),
        make_dev[0].expected.join("\n")
    );

    // The user guide's example of an owner's view starts from the tour's state (the
    // Group acme-admins owns acme): it must show the same.
    let guide = std::fs::read_to_string(argocd::repo_path("docs/user-guide.md"))
        .expect("docs/user-guide.md");
    let owner_view = console_blocks(&guide)
        .iter()
        .map(|b| steps(b))
        .find(|s| {
            s.first().is_some_and(|s| {
                s.command == "kubectl canopy tree -A --as bob --as-group acme-admins"
            })
        })
        .expect("the user guide shows `kubectl canopy tree -A --as bob --as-group acme-admins`");
    for (doc, step) in tour
        .iter()
        .map(|s| ("README.md", s))
        .chain(owner_view.iter().map(|s| ("docs/user-guide.md", s)))
    {
        run_step(doc, step, &dev.kubeconfig, &path);
    }

    // The user guide's set-up check: the webhooks answer, with the message it quotes.
    let (check, refusal) = webhook_check(&guide);
    let (success, output) = run(&check, &dev.kubeconfig, &path);
    assert!(
        !success && output.contains(&refusal),
        "$ {check}\nprints\n{output}\nwhile docs/user-guide.md says it fails with {refusal:?}"
    );
    // Its day-to-day commands all work on the tour's cluster.
    let day_to_day = day_to_day_commands(&guide);
    assert!(
        day_to_day.len() >= 5,
        "the user guide's day-to-day table: {day_to_day:?}"
    );
    for command in &day_to_day {
        let (success, output) = run(command, &dev.kubeconfig, &path);
        assert!(success, "$ {command}\n{output}");
        eprintln!("ok: $ {command}");
    }

    // The objects of the tour, live, as Argo CD would see them.
    let live = |args: &str| -> serde_json::Value {
        let (success, output) = run(
            &format!("kubectl get {args} -o json"),
            &dev.kubeconfig,
            &path,
        );
        assert!(success, "kubectl get {args}: {output}");
        serde_json::from_str(&output).expect("kubectl prints JSON")
    };
    for (check, args) in [
        (HealthCheck::Tenant, "tenant acme"),
        (
            HealthCheck::SubnamespaceAnchor,
            "subnamespaceanchor acme-dev -n acme",
        ),
        (
            HealthCheck::HierarchyConfiguration,
            "hierarchyconfiguration hierarchy -n acme",
        ),
        (
            HealthCheck::HierarchyConfiguration,
            "hierarchyconfiguration hierarchy -n acme-dev",
        ),
        (
            HealthCheck::CanopyConfiguration,
            "canopyconfiguration config",
        ),
    ] {
        // Argo CD evaluates health again whenever the object changes; canopy writes the
        // configuration's status a moment after it starts.
        let started = Instant::now();
        loop {
            let obj = live(args);
            let (status, message) = health(check, &obj);
            if status == "Healthy" {
                eprintln!("Argo CD health of {args}: {status} ({message})");
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "Argo CD health of {args}: {status} ({message})\n{obj:#}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[test]
fn the_matcher_tolerates_only_what_varies() {
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    let shown = lines(
        "NAME   ROOT   NAMESPACES   MAX   READY   AGE\nacme   acme   1            10    True    5s",
    );
    assert!(matches(
        &shown,
        &lines(
            "NAME   ROOT   NAMESPACES   MAX   READY   AGE\nacme   acme   1            10    True    112s"
        )
    ));
    assert!(matches(
        &shown,
        &lines(
            "NAME   ROOT   NAMESPACES   MAX   READY   AGE\nacme   acme   1            10    True    2m3s"
        )
    ));
    assert!(!matches(
        &shown,
        &lines(
            "NAME   ROOT   NAMESPACES   MAX   READY   AGE\nacme   acme   1            10    False   5s"
        )
    ));
    assert!(!matches(
        &shown,
        &lines("NAME   ROOT   NAMESPACES   MAX   READY   AGE")
    ));
    let dots = lines("...\nexport KUBECONFIG=/x");
    assert!(matches(&dots, &lines("a\nb\nexport KUBECONFIG=/x")));
    assert!(matches(&dots, &lines("export KUBECONFIG=/x")));
    assert!(!matches(&dots, &lines("export KUBECONFIG=/x\n# more")));
    let prefix = lines("NAMESPACE   NAME   NODE   ...");
    assert!(matches(
        &prefix,
        &lines("NAMESPACE   NAME   NODE   NOMINATED NODE")
    ));
    assert!(!is_age("acme"));
    assert!(!is_age("10"));
    assert!(is_age("10s"));
}

#[test]
fn commands_are_read_with_their_heredocs_and_continuations() {
    let block: Vec<String> = "$ kubectl apply -f - <<'YAML'\nkind: Tenant\nYAML\ntenant created\n$ kubectl run a \\\n    -- sh\npod/a created\n$ kubectl explain x"
        .lines()
        .map(str::to_owned)
        .collect();
    let steps = steps(&block);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(
        steps[0].command,
        "kubectl apply -f - <<'YAML'\nkind: Tenant\nYAML"
    );
    assert_eq!(steps[0].expected, ["tenant created"]);
    assert_eq!(steps[1].command, "kubectl run a \\\n    -- sh");
    assert!(steps[2].expected.is_empty());
}
