//! Running the host tools the node needs (ip, iptables, ipset, ctr), with their output in
//! the error.

use std::process::Command;

use super::NodeError;

/// Runs `program args`, returning stdout; an error carries stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, NodeError> {
    run_with_stdin(program, args, None)
}

/// Like `run`, with `stdin` piped in.
pub fn run_with_stdin(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, NodeError> {
    use std::io::Write;
    use std::process::Stdio;
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(resolve(program))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NodeError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| NodeError::Command {
                command: command.clone(),
                detail: format!("writing stdin: {e}"),
            })?;
    }
    let output = child.wait_with_output().map_err(|e| NodeError::Command {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NodeError::Command {
            command,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Whether `program` is on PATH (or in /usr/sbin or /sbin, which a non-login root shell may
/// lack) or at the given absolute path.
pub fn exists(program: &str) -> bool {
    std::path::Path::new(&resolve(program)).is_file()
}

/// The full path of `program`, searched in PATH, /usr/sbin and /sbin; `program` itself
/// when not found (so the spawn error names it).
pub fn resolve(program: &str) -> std::path::PathBuf {
    if program.starts_with('/') {
        return program.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.into())
}
