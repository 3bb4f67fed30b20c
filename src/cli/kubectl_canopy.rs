//! `kubectl-canopy`: the kubectl plugin (`kubectl canopy tree|create|set|describe`).

fn main() -> std::process::ExitCode {
    canopy::cli::main()
}
